"""`fedembed certs | node-keys | client | front | deploy`: the deployment subcommands (docs/DEPLOY.md).

Kept apart from fedembed/cli.py, which only calls `add_subcommands`.
"""
from __future__ import annotations

import argparse
import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

from fedembed.errors import ConfigError


def _certs(args: argparse.Namespace) -> int:
    from fedembed.deploy import certs

    files = certs.generate(Path(args.dir), args.host or [], days=args.days, overwrite=args.force)
    print(f"CA certificate (give to every SuperNode and to flwr): {files.ca_cert}")
    print(f"SuperLink certificate / key: {files.server_cert} / {files.server_key}  "
          f"(valid for {', '.join(certs.hosts_of(files.server_cert))})")
    print(f"CA key (keep it off the SuperLink machine): {files.ca_key}")
    return 0


def _node_keys(args: argparse.Namespace) -> int:
    from fedembed.deploy import node_keys

    for private, public in node_keys.generate(Path(args.dir), args.count, start=args.start, overwrite=args.force):
        print(f"{private}  (private: stays on the node)  {public}  (register: flwr supernode register {public} ...)")
    return 0


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--superlink expects HOST:PORT, got {value!r}")
    return value


def _client(args: argparse.Namespace) -> int:
    """Run one SuperNode with our ClientApp in the foreground; its log is this command's output."""
    from fedembed.data import device
    from fedembed.deploy.federation import supernode_argv
    from fedembed.deploy.processes import flower_env, free_port
    from fedembed.deploy.node_keys import load_private
    from fedembed.deploy.node_runtime import INPROCESS
    from fedembed.federation.stream import Backoff

    superlink = _host_port(args.superlink)
    data = Path(args.data).expanduser().resolve()
    if not data.exists():
        raise ConfigError(f"--data does not exist: {data}")
    if args.num_partitions < 1 or not 0 <= args.partition_id < args.num_partitions:
        raise ConfigError(f"--partition-id must be in [0, --num-partitions), got {args.partition_id} "
                          f"of {args.num_partitions}")
    if args.insecure and (args.root_certificates or args.auth_key):
        raise ConfigError("--insecure cannot be combined with --root-certificates or --auth-key")
    if not args.insecure and not args.root_certificates:
        raise ConfigError("TLS is on by default: give --root-certificates CA.crt (or --insecure for a test)")
    ca = Path(args.root_certificates).expanduser().resolve() if args.root_certificates else None
    if ca is not None and not ca.is_file():
        raise ConfigError(f"--root-certificates file does not exist: {ca}")
    key = Path(args.auth_key).expanduser().resolve() if args.auth_key else None
    if key is not None:
        load_private(key)
    cache = Path(args.cache).expanduser().resolve() if args.cache else device.cache_root()
    backoff = Backoff(args.poll_min, args.poll_max)  # refuses bad --poll-min/--poll-max before anything starts
    device_policy = _policy(args)
    node_config = {"partition-id": args.partition_id, "num-partitions": args.num_partitions, "data-path": str(data)}
    env = {device.CACHE_ENV: str(cache)}
    if args.vocab:
        vocab = Path(args.vocab).expanduser().resolve()
        if not vocab.is_file():
            raise ConfigError(f"--vocab file does not exist: {vocab}")
        env[device.VOCAB_ENV] = str(vocab)
    print(f"fedembed client: partition {args.partition_id}/{args.num_partitions}, data {data}, "
          f"SuperLink {args.superlink} ({'TLS' if ca else 'INSECURE'}, {'auth key ' + str(key) if key else 'no auth key'}), "
          f"{args.runtime} runtime; {device_policy.describe()}", flush=True)
    if args.runtime == INPROCESS:
        return _client_in_process(superlink, ca, key, node_config, env, backoff, args, device_policy)
    home = Path(args.flwr_home).expanduser().resolve() if args.flwr_home else cache / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)  # flower-supernode installs the app there
    argv = supernode_argv(superlink, ca, key, node_config, args.runtime_port or free_port(),
                          max_retries=args.max_retries, max_wait_time=args.max_wait_time)
    proc = subprocess.Popen(argv, env={**flower_env(home), **env})

    def forward(signum, _frame) -> None:
        proc.send_signal(signum)

    old = signal.signal(signal.SIGTERM, forward)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        code = proc.wait()
    finally:
        signal.signal(signal.SIGTERM, old)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"fedembed client: SuperNode exited with code {code}; its peak memory {peak / 1024:.1f} MB "
          f"(each round's ClientApp reports its own above)", flush=True)
    return code


def _policy(args: argparse.Namespace):
    """The device's privacy policy from --policy FILE and the flags (a flag wins over the file).

    Only this process's own code can enforce it: under `--runtime flower` the ClientApp comes
    from the run's FAB, i.e. from the server, so a policy there is refused."""
    from fedembed.deploy import policy
    from fedembed.deploy.node_runtime import INPROCESS

    p = policy.load(args.policy, require_secagg=True if args.require_secagg else None,
                    min_noise_multiplier=args.min_noise_multiplier, max_epsilon=args.max_epsilon,
                    delta=args.delta, max_rounds=args.max_rounds)
    if p.active and args.runtime != INPROCESS:
        raise ConfigError(f"a device policy needs --runtime {INPROCESS}: under --runtime {args.runtime} the "
                          f"ClientApp is the server's (the run's FAB), which could ignore it")
    return p


def _client_in_process(superlink: str, ca: Path | None, key: Path | None, node_config: dict,
                       env: dict[str, str], backoff, args: argparse.Namespace, device_policy) -> int:
    """This process is the SuperNode and runs the ClientApp itself (fedembed/deploy/node_runtime.py),
    inside the device's policy (fedembed/deploy/policy.py)."""
    import os

    from fedembed import nodelog
    from fedembed.deploy import node_runtime, policy

    os.environ.update(env)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    handled = node_runtime.run_node(superlink, node_config, ca, key,
                                    backoff=backoff,
                                    max_retries=args.max_retries, max_wait_time=args.max_wait_time,
                                    mods=policy.mods(device_policy))
    print(f"fedembed client: stopped after {handled} messages; peak memory {nodelog.peak_rss_mb():.1f} MB "
          f"(ru_maxrss)", flush=True)
    return 0


def _front(args: argparse.Namespace) -> int:
    """The Fleet API, and only it, on a network address; the SuperLink stays on loopback."""
    from fedembed.deploy import front

    front.serve(args.listen, args.superlink, Path(args.tls).expanduser())
    return 0


def _deploy(args: argparse.Namespace) -> int:
    """A whole local federation: SuperLink + N SuperNodes with TLS and auth, one `flwr run`, all stopped."""
    from fedembed.deploy.federation import LocalFederation

    run_config: dict[str, object] = {"out": str(Path(args.out).expanduser().resolve())}
    if args.config:
        scenario = Path(args.config).expanduser().resolve()
        if not scenario.is_file():
            raise ConfigError(f"--config file does not exist: {scenario}")
        run_config["scenario"] = str(scenario)
    if args.rounds is not None:
        run_config["rounds"] = args.rounds
    from fedembed import compose

    clients = compose.load(run_config.get("scenario")).partition.num_clients
    devices = [Path(k).expanduser().resolve() for k in args.device_key or []]
    missing = [str(k) for k in devices if not k.is_file()]
    if missing:
        raise ConfigError(f"--device-key file does not exist: {', '.join(missing)}")
    if devices and not args.listen:
        raise ConfigError("--device-key needs --listen HOST:PORT: the address devices reach the Fleet API at")
    local = clients - len(devices)
    nodes = local if args.nodes is None else args.nodes
    if nodes != local:
        what = f"and {len(devices)} --device-key(s) do not add up to" if devices else "differs from"
        raise ConfigError(f"--nodes {nodes} {what} the scenario's partition.num_clients = {clients}: the ServerApp "
                          f"waits for one SuperNode per client")
    fed = LocalFederation(Path(args.workdir), nodes, runtime=args.node_runtime, persist=args.state == "file",
                          listen=args.listen, devices=tuple(devices))
    exposed = (f"only the Fleet API on {fed.listen} (a front; the SuperLink itself on {fed.address})" if fed.listen
               else f"the SuperLink on {fed.address}, nothing off loopback")
    for k, key in enumerate(devices):
        print(f"device {k} ({key.name}): fedembed client --superlink {fed.listen} --root-certificates "
              f"{fed.tls.ca_cert} --auth-key <its private key> --partition-id {nodes + k} --num-partitions "
              f"{clients} --data ...", flush=True)
    with fed:
        fed.start()
        print(f"{exposed} (TLS, SuperNode auth, {args.state} state); {nodes} {args.node_runtime} SuperNodes"
              f"{f' and {len(devices)} devices' if devices else ''} online: {sorted(fed.node_ids.values())}",
              flush=True)
        report = Path(run_config["out"]) / "report.json"
        # --quiet: don't stream the log (it costs the SuperLink CPU); wait for the run's report.
        done = report if args.quiet and not report.exists() else None
        out = fed.run(run_config, timeout=args.timeout, done=done)
        if not args.quiet:
            print(out)
    left = fed.stop()
    if left:
        print(f"fedembed deploy: processes still running: {left}", file=sys.stderr)
    if report.is_file():
        print(json.dumps(json.loads(report.read_text()).get("quality", {}), indent=2))
    print(f"run directory: {run_config['out']}; logs: {fed.logs}")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    from fedembed.deploy.node_runtime import POLL_MAX, POLL_MIN, RUNTIMES
    from fedembed.deploy.policy import DEFAULT_DELTA

    c = sub.add_parser("certs", help="create a TLS CA and the SuperLink certificate (deployment)")
    c.add_argument("dir", help="directory for ca.crt, ca.key, server.pem, server.key")
    c.add_argument("--host", action="append", metavar="HOST",
                   help="extra host name or IP the SuperLink is reached by (repeatable; 127.0.0.1 and localhost "
                        "are always included)")
    c.add_argument("--days", type=int, default=365, help="validity (default 365)")
    c.add_argument("--force", action="store_true", help="replace existing files")
    c.set_defaults(func=_certs)

    k = sub.add_parser("node-keys", help="create SuperNode authentication key pairs (deployment)")
    k.add_argument("dir", help="directory for node_<i> (private) and node_<i>.pub")
    k.add_argument("count", type=int, help="number of key pairs")
    k.add_argument("--start", type=int, default=0, help="index of the first node (default 0)")
    k.add_argument("--force", action="store_true", help="replace existing files")
    k.set_defaults(func=_node_keys)

    e = sub.add_parser("client", help="run this device as a SuperNode with fedembed's ClientApp (deployment)")
    e.add_argument("--data", required=True, help="this device's corpus (text file, directory, .jsonl) or shard dir")
    e.add_argument("--superlink", required=True, metavar="HOST:PORT", help="the SuperLink's address")
    e.add_argument("--root-certificates", metavar="CA", help="CA certificate that signed the SuperLink's")
    e.add_argument("--auth-key", metavar="KEY", help="this node's private key (registered with the SuperLink)")
    e.add_argument("--partition-id", type=int, default=0, help="this node's client id (default 0)")
    e.add_argument("--num-partitions", type=int, default=1,
                   help="number of clients in the federation (= the scenario's partition.num_clients)")
    e.add_argument("--vocab", help="local copy of the public word list, if the scenario's vocab.source is a file")
    e.add_argument("--cache", help="where the local shard and Flower's files go (default ~/.cache/fedembed/edge)")
    e.add_argument("--flwr-home", help="--runtime flower: FLWR_HOME for the SuperNode (default CACHE/flwr-home)")
    e.add_argument("--runtime-port", type=int,
                   help="--runtime flower: local port of the SuperNode's Runtime API (default: a free one)")
    e.add_argument("--max-retries", type=int, help="give up reconnecting after this many tries (default: never)")
    e.add_argument("--max-wait-time", type=float, help="give up reconnecting after this many seconds (default: never)")
    e.add_argument("--insecure", action="store_true", help="no TLS (tests only)")
    e.add_argument("--runtime", choices=RUNTIMES, default=RUNTIMES[0],
                   help="inprocess (default): this process is the SuperNode and runs the ClientApp itself, "
                        "seconds faster a message; flower: run Flower's flower-supernode, a fresh ClientApp "
                        "process per message (docs/DEPLOY.md, 'Node runtimes')")
    e.add_argument("--poll-min", type=float, default=POLL_MIN,
                   help=f"inprocess: seconds before asking for the next message right after one (default {POLL_MIN})")
    e.add_argument("--poll-max", type=float, default=POLL_MAX,
                   help=f"inprocess: longest wait between asks while idle (default {POLL_MAX}; raise it for many "
                        f"nodes)")
    pol = e.add_argument_group("device privacy policy (inprocess runtime; docs/DEPLOY.md, 'A device's own "
                               "privacy policy'): a message that breaks it gets an error reply naming the rule")
    pol.add_argument("--policy", metavar="TOML", help="policy file (keys: require_secagg, min_noise_multiplier, "
                                                     "max_epsilon, delta, max_rounds); the flags below override it")
    pol.add_argument("--require-secagg", action="store_true",
                     help="refuse plain train messages (the update would leave unmasked)")
    pol.add_argument("--min-noise-multiplier", type=float, metavar="Z",
                     help="refuse a round whose noise multiplier z = sigma_i*sqrt(m)/C is below Z")
    pol.add_argument("--max-epsilon", type=float, metavar="EPS",
                     help="refuse a round whose own epsilon (one Gaussian mechanism at z, no amplification, at "
                          "--delta) is above EPS")
    pol.add_argument("--delta", type=float, help=f"delta of --max-epsilon (default {DEFAULT_DELTA:g})")
    pol.add_argument("--max-rounds", type=int, metavar="N", help="train at most N rounds per run")
    e.set_defaults(func=_client)

    f = sub.add_parser("front", help="serve only the SuperLink's Fleet API on a network address, TLS (deployment)")
    f.add_argument("--listen", required=True, metavar="HOST:PORT", help="where devices connect, e.g. 0.0.0.0:9092")
    f.add_argument("--superlink", default="127.0.0.1:9093", metavar="HOST:PORT",
                   help="the SuperLink, on loopback (default 127.0.0.1:9093)")
    f.add_argument("--tls", required=True, metavar="DIR",
                   help="`fedembed certs` directory: server.pem and server.key (served), ca.crt (the SuperLink's)")
    f.set_defaults(func=_front)

    d = sub.add_parser("deploy", help="run a local federation: SuperLink + N SuperNodes (TLS, auth), one flwr run")
    d.add_argument("--nodes", type=int, help="local SuperNodes (default and required: the scenario's "
                                             "partition.num_clients less the --device-keys)")
    d.add_argument("--listen", metavar="HOST:PORT",
                   help="also let devices elsewhere in, at this address: a front that serves only the Fleet API "
                        "(the SuperLink stays on loopback; default: nothing listens off loopback)")
    d.add_argument("--device-key", action="append", metavar="PUB",
                   help="a device's public key to register (repeatable; it connects through --listen and takes "
                        "the partition id after the local nodes')")
    d.add_argument("--workdir", required=True, help="certificates, keys, Flower state and logs go here")
    d.add_argument("--config", help="scenario TOML (default: the built-in default scenario)")
    d.add_argument("--out", default="runs/deploy", help="run directory (default runs/deploy)")
    d.add_argument("--rounds", type=int, help="override federation.rounds")
    d.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run (default 3600)")
    d.add_argument("--quiet", action="store_true", help="don't print the run's log")
    d.add_argument("--node-runtime", choices=RUNTIMES, default=RUNTIMES[0],
                   help="SuperNodes: fedembed's in-process node (default) or Flower's flower-supernode "
                        "(a fresh ClientApp process per message; docs/DEPLOY.md, 'Node runtimes')")
    d.add_argument("--state", choices=["memory", "file"], default="memory",
                   help="SuperLink state: Flower's in-memory default, or WORKDIR/superlink.db (slower; "
                        "registrations survive a SuperLink restart)")
    d.set_defaults(func=_deploy)
