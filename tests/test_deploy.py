"""Deployment pieces that need no running federation: TLS files, node keys, the edge client's
local shard, command-line checks (all fast); and one SuperLink (TLS + node auth) refusing an
unregistered and a keyless SuperNode (slow: processes start).

The federation end to end (three SuperNodes, two rounds, a SuperLink restart) is in
tests/test_deploy_e2e.py (slow).
"""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedembed import compose, config as config_mod
from fedembed.cli import main
from fedembed.data.shards import load_shard
from fedembed import nodelog
from fedembed.data import device
from fedembed.deploy import certs, node_keys
from fedembed.deploy.federation import format_node_config, supernode_argv
from fedembed.errors import ConfigError
from fedembed.vocab import from_word_list

WORDS = "tiger cat computer keyboard internet plane car train book paper".split()


def test_certs_chain_hosts_and_permissions(tmp_path):
    files = certs.generate(tmp_path / "tls", ["fed.example.org", "10.1.2.3"], days=30)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)  # signed by our CA
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert set(certs.hosts_of(files.server_cert)) == {"127.0.0.1", "localhost", "fed.example.org", "10.1.2.3"}
    key = serialization.load_pem_private_key(files.server_key.read_bytes(), None)
    assert key.public_key().public_numbers() == server.public_key().public_numbers()
    for secret in (files.server_key, files.ca_key):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        certs.generate(tmp_path / "tls")
    certs.generate(tmp_path / "tls", overwrite=True)
    with pytest.raises(ConfigError, match="not a host name"):
        certs.generate(tmp_path / "bad", ["has space"])
    with pytest.raises(ConfigError, match="at least 1 day"):
        certs.generate(tmp_path / "bad", days=0)


def test_node_keys_in_flower_format(tmp_path):
    pairs = node_keys.generate(tmp_path / "keys", 3)
    assert [p.name for p, _ in pairs] == ["node_0", "node_1", "node_2"]
    for private, public in pairs:
        # What flower-supernode (--auth-supernode-private-key) and `flwr supernode register` load.
        priv = serialization.load_ssh_private_key(private.read_bytes(), None)
        pub = serialization.load_ssh_public_key(public.read_bytes())
        assert isinstance(priv, ec.EllipticCurvePrivateKey) and isinstance(priv.curve, ec.SECP384R1)
        assert pub.public_numbers() == priv.public_key().public_numbers()
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        assert node_keys.load_private(private).curve.name == "secp384r1"
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        node_keys.generate(tmp_path / "keys", 1)
    assert node_keys.generate(tmp_path / "keys", 2, start=3)[0][0].name == "node_3"
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(ConfigError, match="OpenSSH private key"):
        node_keys.load_private(tmp_path / "junk")
    with pytest.raises(ConfigError, match="does not exist"):
        node_keys.load_private(tmp_path / "missing")


def test_cli_certs_and_node_keys(tmp_path, capsys):
    assert main(["certs", str(tmp_path / "tls"), "--host", "edge.example"]) == 0
    assert (tmp_path / "tls" / "ca.crt").is_file()
    assert main(["certs", str(tmp_path / "tls")]) == 2  # exists: refused, not overwritten
    assert main(["node-keys", str(tmp_path / "keys"), "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["node_0", "node_0.pub", "node_1", "node_1.pub"]
    cache = ["--cache", str(tmp_path / "cache")]  # nothing may land in ~/.cache, even on error
    assert main(["client", "--data", str(tmp_path / "none"), "--superlink", "127.0.0.1:9", *cache]) == 2
    assert main(["client", "--data", str(tmp_path), "--superlink", "nohostport",
                 "--root-certificates", str(tmp_path / "tls" / "ca.crt"), *cache]) == 2
    assert main(["client", "--data", str(tmp_path), "--superlink", "127.0.0.1:9", *cache]) == 2  # TLS needs a CA
    assert not (tmp_path / "cache").exists()  # refused before anything was created
    err = capsys.readouterr().err
    assert "does not exist" in err and "HOST:PORT" in err and "--root-certificates" in err
    scenario = tmp_path / "s.toml"
    scenario.write_text("[partition]\nnum_clients = 3\n", encoding="utf-8")
    assert main(["deploy", "--workdir", str(tmp_path / "fed"), "--config", str(scenario), "--nodes", "2"]) == 2
    assert "differs from the scenario's partition.num_clients = 3" in capsys.readouterr().err
    assert not (tmp_path / "fed").exists()  # refused before anything started


def test_node_config_and_supernode_argv(tmp_path):
    cfg = {"partition-id": 2, "num-partitions": 3, "data-path": str(tmp_path / "my data")}
    text = format_node_config(cfg)
    assert text == f'partition-id=2 num-partitions=3 data-path="{tmp_path / "my data"}"'
    from flwr.common.config import parse_config_args  # how flower-supernode reads --node-config
    assert parse_config_args([text]) == cfg
    argv = supernode_argv("127.0.0.1:9093", tmp_path / "ca.crt", tmp_path / "node_0", cfg, 12345, max_retries=5)
    assert argv[argv.index("--root-certificates") + 1] == str(tmp_path / "ca.crt")
    assert argv[argv.index("--auth-supernode-private-key") + 1] == str(tmp_path / "node_0")
    assert "--insecure" not in argv and argv[argv.index("--max-retries") + 1] == "5"


def _edge_cfg(tmp_path: Path) -> config_mod.Config:
    words = tmp_path / "words.txt"
    words.write_text("".join(f"{w} {100 - i}\n" for i, w in enumerate(WORDS)), encoding="utf-8")
    return compose.from_dict({"vocab": {"source": str(words), "min_count": 1}})


def test_edge_client_tokenizes_its_raw_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv(device.CACHE_ENV, str(tmp_path / "cache"))
    cfg = _edge_cfg(tmp_path)
    counts = from_word_list(Path(cfg.vocab.source)).counts  # what the server sends
    corpus = tmp_path / "device.txt"
    corpus.write_text("The tiger and the cat.\nA computer keyboard, unknownword!\n\nplane car train\n", encoding="utf-8")
    shard_dir, index = device.local_data(str(corpus), "/server/shards", cfg, counts, partition_id=7)
    assert index == 0 and shard_dir.parent == tmp_path / "cache"
    ids, bounds = load_shard(shard_dir, index)
    assert [WORDS[i] for i in ids] == ["tiger", "cat", "computer", "keyboard", "plane", "car", "train"]
    assert bounds.tolist() == [2, 4, 7]
    assert json.loads((shard_dir / "shard.json").read_text())["tokens"] == 7
    # Cached: the next round (a new ClientApp process) does not tokenize again.
    mtime = (shard_dir / "client_00000.ids").stat().st_mtime_ns
    assert device.local_data(str(corpus), "", cfg, counts, 7) == (shard_dir, 0)
    assert (shard_dir / "client_00000.ids").stat().st_mtime_ns == mtime
    # No data-path: the server's shard directory; a shard directory: itself.
    assert device.local_data(None, "/server/shards", cfg, counts, 4) == (Path("/server/shards"), 4)
    assert device.local_data(str(shard_dir), "", cfg, counts, 0) == (shard_dir, 0)


def test_edge_client_refuses_another_vocabulary(tmp_path, monkeypatch):
    monkeypatch.setenv(device.CACHE_ENV, str(tmp_path / "cache"))
    cfg = _edge_cfg(tmp_path)
    corpus = tmp_path / "device.txt"
    corpus.write_text("tiger cat\n", encoding="utf-8")
    server_counts = from_word_list(Path(cfg.vocab.source)).counts.copy()
    server_counts[3] += 1
    with pytest.raises(ConfigError, match="not the server's.*row 3"):
        device.local_data(str(corpus), "", cfg, server_counts, 0)
    with pytest.raises(ConfigError, match="not the server's"):
        device.local_data(str(corpus), "", cfg, server_counts[:-1], 0)
    # A word list that exists only on the server: the device must bring its own copy.
    remote = compose.from_dict({"vocab": {"source": str(tmp_path / "server-only.txt"), "min_count": 1}})
    with pytest.raises(ConfigError, match="--vocab"):
        device.local_data(str(corpus), "", remote, server_counts, 0)
    monkeypatch.setenv(device.VOCAB_ENV, cfg.vocab.source)
    good = from_word_list(Path(cfg.vocab.source)).counts
    assert load_shard(*device.local_data(str(corpus), "", remote, good, 0))[0].tolist() == [0, 1]
    with pytest.raises(Exception, match="does not exist"):
        device.local_data(str(tmp_path / "gone.txt"), "", cfg, good, 0)


def test_edge_client_refuses_other_words_with_the_servers_counts(tmp_path, monkeypatch):
    """Counts alone cannot tell two word lists apart; the server's fingerprint can."""
    monkeypatch.setenv(device.CACHE_ENV, str(tmp_path / "cache"))
    cfg = _edge_cfg(tmp_path)
    server = from_word_list(Path(cfg.vocab.source))
    other = tmp_path / "other.txt"
    other.write_text(Path(cfg.vocab.source).read_text(encoding="utf-8").replace("tiger", "lion"), encoding="utf-8")
    monkeypatch.setenv(device.VOCAB_ENV, str(other))
    corpus = tmp_path / "device.txt"
    corpus.write_text("lion cat computer\n", encoding="utf-8")
    assert device.local_data(str(corpus), "", cfg, server.counts, 0)[1] == 0          # no fingerprint: counts pass
    with pytest.raises(ConfigError, match="has the server's counts but not its words"):
        device.local_data(str(corpus), "", cfg, server.counts, 0, server.fingerprint())
    monkeypatch.setenv(device.VOCAB_ENV, cfg.vocab.source)
    shard, _ = device.local_data(str(corpus), "", cfg, server.counts, 0, server.fingerprint())
    assert load_shard(shard, 0)[0].tolist() == [1, 2]                                  # "lion" is not a word here


def test_peak_memory_is_reported(monkeypatch):
    lines = []
    monkeypatch.setattr(nodelog, "report", lines.append)
    nodelog.log_round_memory(3, 1, 0.5, data_path=None)
    assert lines == []  # simulation: not a deployed node
    nodelog.log_round_memory(3, 1, 0.5, data_path="/data")
    monkeypatch.setenv(nodelog.MEMORY_ENV, "1")
    nodelog.log_round_memory(4, 1, 0.5, data_path=None)
    assert len(lines) == 2 and "round 3" in lines[0] and "peak memory" in lines[0] and "MB" in lines[0]
    assert nodelog.peak_rss_mb() > 1


needs_flower = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not Path(sys.executable).with_name("flower-superlink").exists(),
    reason="needs Linux (/proc, to find every process started) and Flower's executables in this venv")


@pytest.fixture
def federation(tmp_path):
    """A LocalFederation factory; teardown stops every process it started and checks none is left."""
    from fedembed.deploy.federation import LocalFederation
    from fedembed.deploy.processes import processes_with_home

    made: list[LocalFederation] = []

    def make(num_nodes: int, runtime: str = "flower") -> LocalFederation:
        made.append(LocalFederation(tmp_path / f"fed{len(made)}", num_nodes, runtime=runtime))
        return made[-1]

    yield make
    for fed in made:
        left = fed.stop()
        assert not left and not processes_with_home(fed.home), f"still running: {left}"


@needs_flower
@pytest.mark.slow  # about 35 s here: a SuperLink and three SuperNodes start
@pytest.mark.parametrize("runtime", ["flower", "inprocess"])
def test_unknown_and_keyless_nodes_are_refused(tmp_path, federation, runtime):
    fed = federation(1, runtime).prepare()
    fed.start_superlink()
    registered = fed.register(0)
    stranger = node_keys.generate(tmp_path / "stranger", 1)[0][0]  # a valid key nobody registered
    unknown = fed.start_node(1, {"partition-id": 0, "num-partitions": 1}, key=stranger)
    keyless = fed.start_node(2, {"partition-id": 0, "num-partitions": 1}, key=None)
    fed.start_node(0)
    assert fed.wait_online(1) == {registered: "online"}
    for proc in (unknown, keyless):
        assert proc.popen.wait(120) != 0, proc.log_text()
    assert "Failed to activate SuperNode" in unknown.log_text(), unknown.log_text()
    assert "All SuperNodes must be registered" in keyless.log_text(), keyless.log_text()
    assert fed.nodes[0].alive()
    # Only the registered node ever became known to the SuperLink.
    from fedembed.deploy.federation import node_statuses
    assert node_statuses(fed.home, fed.workdir) == {registered: "online"}


def _busy(seconds):
    import time
    time.sleep(seconds)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork start method")
def test_pool_workers_forked_for_the_vocabulary_do_not_inherit_the_exit_handler(tmp_path):
    """gensim's WikiCorpus (built-in corpus) forks helper processes and SIGTERMs them; under
    Flower the inherited graceful-exit handler would report the parent's task finished.
    (Without `default_signal_handlers` the marker is written: checked by hand.)"""
    import multiprocessing
    import signal

    marker = tmp_path / "handler-ran"

    def flower_like_handler(signum, frame):  # runs in whichever process gets SIGTERM
        marker.write_text(str(os.getpid()))
        os._exit(0)

    previous = signal.signal(signal.SIGTERM, flower_like_handler)
    try:
        with device.default_signal_handlers():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
            pool = multiprocessing.get_context("fork").Pool(1)
            pool.map_async(_busy, [5])
            import time
            time.sleep(0.5)
            pool.terminate()  # SIGTERM to the busy worker (an idle one would exit on its own)
            pool.join()
        assert signal.getsignal(signal.SIGTERM) is flower_like_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not marker.exists()


def test_waiting_for_a_run_without_streaming_its_log(tmp_path, monkeypatch):
    """`run(done=...)`: the run's status is asked only now and then until the file appears, then
    until the SuperLink says the run finished; a run that never finishes times out."""
    from fedembed.deploy.federation import LocalFederation

    fed = LocalFederation(tmp_path / "fed", 1)
    done = tmp_path / "report.json"
    asked: list[bool] = []

    def status() -> str:
        asked.append(done.exists())
        if len(asked) == 2:
            done.write_text("{}")  # the run writes its report; the SuperLink is a moment behind
        return "finished:completed" if len(asked) >= 4 else "running"

    monkeypatch.setattr(fed, "last_run_status", status)
    assert fed.wait_finished(done, timeout=60, every=0.2) == "finished:completed"
    assert asked == [False, False, True, True]
    asked.clear()
    done.unlink()
    monkeypatch.setattr(fed, "last_run_status", lambda: "running")
    assert fed.wait_finished(done, timeout=1.2, every=0.2).startswith("timed out after 1s (running)")
