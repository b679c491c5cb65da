"""EmbeddingService over a real gRPC channel: every method, every error code, health, TLS.

The served run is built without training (fedembed.serving.testing.write_run_dir), and the
answers are checked against gensim's KeyedVectors on the same vectors.
"""
from __future__ import annotations

import datetime
import ipaddress
import logging
import threading
import unicodedata
from pathlib import Path

import grpc
import numpy as np
import pytest
from gensim.models import KeyedVectors
from hypothesis import given, settings
from hypothesis import strategies as st

from fedembed.errors import FedembedError
from fedembed.export import keyed_vectors
from fedembed.serving._proto import embedding_service_pb2 as pb
from fedembed.serving import EmbeddingClient, EmbeddingServer, ExactIndex, Limits, ServingError, Tls, load_model
from fedembed.serving.index import top_k
from fedembed.serving.model import PrivacyInfo, ServedModel
from fedembed.serving import server as server_mod
from fedembed.serving.server import SERVICE_NAME, is_loopback
from fedembed.serving.testing import write_run_dir

DIM = 16
PRIVACY = {"epsilon": 8.0, "delta": 1e-6, "unit": "user", "mechanism": "gaussian", "accountant": "rdp"}


def _vocab() -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(300)] + ["king", "queen", "man", "woman", "zero"]
    vecs = rng.normal(size=(len(words), DIM)).astype(np.float32)
    g, royal = rng.normal(size=DIM), rng.normal(size=DIM)  # a planted analogy: king-man+woman ≈ queen
    vecs[-5], vecs[-4], vecs[-3], vecs[-2] = royal + g, royal - g, 0.3 * royal + g, 0.3 * royal - g
    vecs[-1] = 0.0  # an untrained row
    return words, vecs


@pytest.fixture(scope="module")
def vocab() -> tuple[list[str], np.ndarray]:
    return _vocab()


@pytest.fixture(scope="module")
def kv(vocab) -> KeyedVectors:
    """gensim's reference, without the all-zero row (gensim would divide by its zero norm)."""
    return keyed_vectors(vocab[0][:-1], vocab[1][:-1])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, vocab) -> Path:
    return write_run_dir(tmp_path_factory.mktemp("run") / "run", *vocab, family="cbow", privacy=PRIVACY)


@pytest.fixture(scope="module")
def client(run_dir):
    with EmbeddingServer(load_model(run_dir), port=0, limits=Limits(max_batch=32)) as server, \
            EmbeddingClient(server.address) as c:
        yield c


def _code(exc_info: pytest.ExceptionInfo) -> grpc.StatusCode:
    return exc_info.value.code


# --- every method ---------------------------------------------------------------------------------

def test_info_reports_model_and_privacy(client, vocab):
    info = client.info()
    assert (info["model"], info["dimension"], info["vocab_size"]) == ("cbow", DIM, len(vocab[0]))
    assert (info["index"], info["oov_vectors"], info["max_batch"], info["rounds"]) == ("exact", False, 32, 3)
    p = info["privacy"]
    assert p["is_private"] and (p["epsilon"], p["delta"], p["unit"], p["mechanism"]) == (8.0, 1e-6, "user", "gaussian")
    assert p["guarantee"] == "(epsilon=8, delta=1e-06)-DP at user level (gaussian)"


def test_get_vectors_in_request_order(client, vocab):
    words, vecs = vocab
    got = client.vectors(["queen", "w3", "queen"])
    np.testing.assert_array_equal(got, vecs[[words.index("queen"), 3, words.index("queen")]])
    assert client.vectors([]).shape[0] == 0


def test_similarity_matches_gensim(client, kv):
    pairs = [("king", "queen"), ("w1", "w2"), ("man", "man"), ("zero", "w5")]
    got = client.similarity(pairs)
    assert got[3] == 0.0
    np.testing.assert_allclose(got[:3], [kv.similarity(a, b) for a, b in pairs[:3]], atol=1e-5)


def test_nearest_neighbors_of_word_match_gensim_and_exclude_it(client, kv):
    got = client.neighbors("w10", k=10)
    want = kv.most_similar("w10", topn=10)
    assert [w for w, _ in got] == [w for w, _ in want] and "w10" not in dict(got)
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_nearest_neighbors_of_vector_match_gensim(client, kv, vocab):
    q = vocab[1][42] * 3.0 + 0.01
    got = client.neighbors(q, k=5)
    want = kv.similar_by_vector(q, topn=5)
    assert [w for w, _ in got] == [w for w, _ in want] and got[0][0] == "w42"


def test_k_larger_than_vocabulary_returns_everything_else(tmp_path):
    words, vecs = ["a", "b", "c"], np.eye(3, dtype=np.float32)
    with EmbeddingServer(load_model(write_run_dir(tmp_path / "r", words, vecs)), port=0) as s, \
            EmbeddingClient(s.address) as c:
        assert sorted(w for w, _ in c.neighbors("a", k=10)) == ["b", "c"]
        assert c.info()["privacy"] == {"is_private": False, "epsilon": None, "delta": None, "unit": "",
                                       "mechanism": "none", "guarantee": "not private"}


def test_analogy_matches_gensim(client, kv):
    got = client.analogy("man", "king", "woman", k=3)
    want = kv.most_similar(positive=["king", "woman"], negative=["man"], topn=3)
    assert got[0][0] == "queen" and [w for w, _ in got] == [w for w, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_unseen_words_get_subword_vectors_when_the_model_has_them(vocab):
    """A subword family's index answers unseen words from `oov` (here: a stand-in hash)."""
    words, vecs = vocab

    def oov(word: str) -> np.ndarray:
        return np.random.default_rng(sum(map(ord, word))).normal(size=DIM).astype(np.float32)

    index = ExactIndex(words, vecs, oov=oov)
    with EmbeddingServer(ServedModel(index, model="subword"), port=0) as s, EmbeddingClient(s.address) as c:
        assert c.info()["oov_vectors"]
        np.testing.assert_array_equal(c.vectors(["unseen", "w1"]), np.stack([oov("unseen"), vecs[1]]))
        by_word, by_vector = c.neighbors("unseen", k=5), c.neighbors(oov("unseen"), k=5)
        assert [w for w, _ in by_word] == [w for w, _ in by_vector]
        np.testing.assert_allclose([x for _, x in by_word], [x for _, x in by_vector], atol=1e-6)
        u = oov("unseen") / np.linalg.norm(oov("unseen"))
        assert c.similarity([("unseen", "w1")])[0] == pytest.approx(float(u @ index.unit_row(1)), abs=1e-6)
        assert "unseen" not in dict(c.analogy("unseen", "king", "woman", k=3))


def test_health_check(client):
    assert client.health() == "SERVING" and client.health(SERVICE_NAME) == "SERVING"
    with pytest.raises(ServingError) as e:
        client.health("no.such.Service")
    assert _code(e) == grpc.StatusCode.NOT_FOUND


# --- every error code ----------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda c: c.vectors(["w1", "nosuchword"]),
    lambda c: c.similarity([("w1", "nosuchword")]),
    lambda c: c.neighbors("nosuchword", k=3),
    lambda c: c.analogy("man", "nosuchword", "woman"),
])
def test_unknown_word_is_not_found(client, call):
    with pytest.raises(ServingError) as e:
        call(client)
    assert _code(e) == grpc.StatusCode.NOT_FOUND and "'nosuchword'" in e.value.details


@pytest.mark.parametrize("call, says", [
    (lambda c: c.neighbors("w1", k=0), "k must be positive"),
    (lambda c: c.neighbors("w1", k=-3), "k must be positive"),
    (lambda c: c.analogy("man", "king", "woman", k=0), "k must be positive"),
    (lambda c: c.neighbors(np.ones(DIM + 1), k=3), f"dimension is {DIM}"),
    (lambda c: c.neighbors(np.full(DIM, np.nan), k=3), "NaN"),
    (lambda c: c.neighbors(np.zeros(DIM), k=3), "all zeros"),
    (lambda c: c.analogy("man", "", "woman"), "is empty"),
    (lambda c: c.neighbors("zero", k=3), "all-zero vector"),
    (lambda c: c._call(c.stub.NearestNeighbors, pb.NearestNeighborsRequest(k=3)), "no query"),
])
def test_bad_arguments_are_invalid_argument(client, call, says):
    with pytest.raises(ServingError) as e:
        call(client)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT and says in e.value.details


@pytest.mark.parametrize("call", [
    lambda c: c.vectors([f"w{i}" for i in range(33)]),
    lambda c: c.similarity([("w1", "w2")] * 33),
    lambda c: c.neighbors("w1", k=33),
    lambda c: c.analogy("man", "king", "woman", k=33),
])
def test_over_batch_limit_is_resource_exhausted(client, call):
    with pytest.raises(ServingError) as e:
        call(client)
    assert _code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit is 32" in e.value.details


def test_over_message_limit_is_resource_exhausted(run_dir):
    with EmbeddingServer(load_model(run_dir), port=0, limits=Limits(max_batch=1000, max_message_bytes=2048)) as s, \
            EmbeddingClient(s.address) as c:
        assert len(c.vectors(["w1"] * 10)) == 10
        with pytest.raises(ServingError) as e:  # the answer would not fit: refused before computing it
            c.vectors(["w1"] * 100)
        assert _code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED and "message limit" in e.value.details
        with pytest.raises(ServingError) as e:  # the request itself is over the limit: refused by gRPC
            c.vectors(["w" * 3000])
        assert _code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_unknown_word_echo_is_cut_short(client):
    """A 20 KB unknown word is NOT_FOUND: echoed whole, the status message would pass the client's
    metadata limit (16 KiB) and the client would see RESOURCE_EXHAUSTED instead."""
    word = "ab\u00e9" * 7000
    for call in (lambda: client.vectors([word]), lambda: client.neighbors(word, k=1),
                 lambda: client.similarity([("w1", word)]), lambda: client.analogy("man", "king", word)):
        with pytest.raises(ServingError) as e:
            call()
        assert _code(e) == grpc.StatusCode.NOT_FOUND, e.value.details[:200]
        assert len(e.value.details) < 300 and "21000 characters" in e.value.details


def test_control_characters_are_escaped_in_messages(client):
    with pytest.raises(ServingError) as e:
        client.neighbors("a\nb\x00\u2028c", k=1)
    assert _code(e) == grpc.StatusCode.NOT_FOUND and "\n" not in e.value.details and "\\n" in e.value.details


@pytest.mark.parametrize("call", [
    lambda c: c.vectors(["w1", ""]),
    lambda c: c.similarity([("", "w1")]),
    lambda c: c.neighbors("", k=3),
])
def test_empty_word_is_invalid_argument(client, call):
    with pytest.raises(ServingError) as e:
        call(client)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT and "empty" in e.value.details


def test_query_words_are_normalised_as_training_tokens(tmp_path):
    """Training lower-cases and NFKC-normalises tokens, so the vocabulary holds `king` and a
    composed `fédération`: `King`, `KING` and a decomposed (NFD) `fédération` are those words."""
    words = ["king", "f\u00e9d\u00e9ration", "o'neil", "w1", "w2"]
    vecs = np.random.default_rng(3).normal(size=(len(words), 4)).astype(np.float32)
    nfd = unicodedata.normalize("NFD", words[1])
    assert nfd != words[1]
    with EmbeddingServer(load_model(write_run_dir(tmp_path / "r", words, vecs)), port=0) as s, \
            EmbeddingClient(s.address) as c:
        got = c.vectors(["King", "KING", nfd, "O\u2019Neil", "king"])
        np.testing.assert_array_equal(got, vecs[[0, 0, 1, 2, 0]])
        assert [w for w, _ in c.neighbors("King", k=4)] == [w for w, _ in c.neighbors("king", k=4)]
        assert c.similarity([("King", nfd)]) == c.similarity([("king", words[1])])
        assert "king" not in dict(c.neighbors("KING", k=4))  # the query word itself is still excluded
        with pytest.raises(ServingError) as e:
            c.vectors(["Queen"])
        assert _code(e) == grpc.StatusCode.NOT_FOUND and "'Queen' (nor 'queen')" in e.value.details


def test_exact_spelling_wins_over_the_normalised_one(tmp_path):
    """A bare vectors file may hold cased words (not from fedembed's tokenizer): `King` is then its own row."""
    words, vecs = ["King", "king"], np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    index = ExactIndex(words, vecs)
    np.testing.assert_array_equal(index.vector("King"), vecs[0])
    np.testing.assert_array_equal(index.vector("KING"), vecs[1])


@pytest.mark.parametrize("scale", [1e19, 1e30, 1e-30, 1e-36])
def test_query_vectors_of_any_finite_magnitude(client, kv, vocab, scale):
    """Huge and tiny (even subnormal) finite vectors point somewhere: the answer is that of the
    same direction at unit scale (float32 would overflow the norm at 1e19 and flush 1e-30 to 0)."""
    direction = vocab[1][42] / np.abs(vocab[1][42]).max()
    q = (direction.astype(np.float64) * scale).astype(np.float32)
    assert np.isfinite(q).all() and q.any()
    got, want = client.neighbors(q, k=5), kv.similar_by_vector(direction, topn=5)
    assert [w for w, _ in got] == [w for w, _ in want] and got[0][0] == "w42"
    np.testing.assert_allclose([x for _, x in got], [x for _, x in want], atol=1e-4)


def test_index_rows_of_any_finite_magnitude(vocab):
    """Rows far from unit scale are normalised as well as the query is (the float32 norm of a row
    of 1e20s overflows)."""
    words, vecs = vocab
    plain, scaled = ExactIndex(words, vecs), ExactIndex(words, vecs * np.float32(1e20))
    assert np.isfinite(scaled.vectors).all()
    assert [w for w, _ in scaled.neighbors("w7", 5)] == [w for w, _ in plain.neighbors("w7", 5)]
    np.testing.assert_allclose(scaled.unit_t, plain.unit_t, atol=1e-6)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("::ffff:127.0.0.1", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
    ("192.168.1.2", False), ("example.org", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_plain_text_on_a_non_loopback_address_is_warned_about(run_dir, monkeypatch, caplog):
    model = load_model(run_dir)
    with caplog.at_level(logging.WARNING, logger="fedembed.serving.server"):
        with EmbeddingServer(model, port=0):
            pass
        assert not caplog.records  # loopback: nothing to say
        # The address a server reachable from elsewhere would have; the test still binds loopback.
        monkeypatch.setattr(server_mod, "is_loopback", lambda host: False)
        with EmbeddingServer(model, port=0):
            pass
    assert len(caplog.records) == 1 and "without TLS" in caplog.text and "--tls-cert" in caplog.text


def test_concurrent_calls_are_bounded(run_dir, monkeypatch):
    """Past max_concurrent_rpcs a call is refused at once (RESOURCE_EXHAUSTED), not queued; the
    server answers again once a slot is free."""
    model = load_model(run_dir)
    entered, release = threading.Event(), threading.Event()
    slow = model.index.neighbors

    def blocking(word, k):
        if word == "w1":
            entered.set()
            release.wait(30)
        return slow(word, k)

    monkeypatch.setattr(model.index, "neighbors", blocking)
    with EmbeddingServer(model, port=0, limits=Limits(max_concurrent_rpcs=1), workers=4) as s, \
            EmbeddingClient(s.address, timeout=30) as c:
        held = c.stub.NearestNeighbors.future(pb.NearestNeighborsRequest(word="w1", k=2), timeout=30)
        assert entered.wait(30)
        try:
            with pytest.raises(ServingError) as e:
                c.neighbors("w2", k=2)
            assert _code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            release.set()
        assert len(held.result().neighbors) == 2
        assert len(c.neighbors("w2", k=2)) == 2


def test_malformed_request_body_is_invalid_argument(client):
    """Bytes that do not parse as the method's message (here: a string field holding invalid
    UTF-8) are the caller's mistake, not INTERNAL."""
    raw = client.channel.unary_unary(f"/{SERVICE_NAME}/GetVectors")
    with pytest.raises(grpc.RpcError) as e:
        raw(b"\x0a\x02\xff\xfe", timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid GetVectorsRequest" in e.value.details()
    assert client.health() == "SERVING"


def test_port_in_use_is_a_clear_error(run_dir):
    model = load_model(run_dir)
    with EmbeddingServer(model, port=0) as s, pytest.raises(FedembedError, match="cannot listen on"):
        EmbeddingServer(model, port=s.port)


def test_stopped_server_is_unavailable(run_dir):
    server = EmbeddingServer(load_model(run_dir), port=0)
    with EmbeddingClient(server.address, timeout=2) as c:
        assert c.health() == "SERVING"
        server.stop(0)
        with pytest.raises(ServingError) as e:
            c.info()
        assert _code(e) == grpc.StatusCode.UNAVAILABLE


# --- loading, privacy text, index ----------------------------------------------------------------

def test_load_model_errors_name_the_problem(tmp_path, vocab):
    with pytest.raises(FedembedError, match="no exported vectors"):
        load_model(tmp_path)
    with pytest.raises(FedembedError, match="no run directory or vectors file"):
        load_model(tmp_path / "missing")
    (tmp_path / "embeddings.txt").write_text("not a word2vec file\n")
    with pytest.raises(FedembedError, match="cannot read vectors"):
        load_model(tmp_path)


def test_bare_vectors_file_is_served_with_unknown_privacy(tmp_path, vocab):
    bin_file = write_run_dir(tmp_path / "r", *vocab) / "embeddings.bin"
    m = load_model(bin_file)
    assert len(m.index) == len(vocab[0]) and m.privacy.guarantee == "unknown (no report.json)"


@pytest.mark.parametrize("section, private, text", [
    ({"epsilon": None, "delta": None, "unit": None, "mechanism": "none"}, False, "not private"),
    ({}, False, "not private"),
    ({"epsilon": None, "delta": 1e-5, "unit": "record", "mechanism": "gaussian"}, False, "not private (epsilon"),
    ({"epsilon": 2.5, "delta": 1e-5, "unit": "record", "mechanism": "gaussian"}, True,
     "(epsilon=2.5, delta=1e-05)-DP at record level (gaussian)"),
])
def test_privacy_guarantee_text(section, private, text):
    p = PrivacyInfo.from_report({"privacy": section})
    assert p.is_private == private and p.guarantee.startswith(text)


def test_index_is_exact_against_brute_force():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(500, 8)).astype(np.float32)
    idx = ExactIndex([str(i) for i in range(500)], vecs)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    for n in (3, 12):  # separate matrix-vector products below 8 queries, one matrix product from 8
        queries = rng.normal(size=(n, 8)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        for q, hits in zip(queries, idx.search(queries, 7)):
            assert [j for j, _ in hits] == list(np.argsort(-(unit @ q))[:7])
    assert [j for j, _ in idx.search(unit[3], 500, [[3]])[0]] == [j for j in np.argsort(-(unit @ unit[3])) if j != 3]
    with pytest.raises(ValueError, match="duplicate"):
        ExactIndex(["a", "a"], np.ones((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        ExactIndex(["a"], np.full((1, 2), np.nan))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60_000), st.integers(1, 40), st.integers(0, 2**32 - 1), st.booleans())
def test_top_k_is_exact(n, k, seed, ties):
    """Block-maxima top-k equals a full sort, with and without ties and -inf exclusions."""
    rng = np.random.default_rng(seed)
    scores = (rng.integers(0, 5, n) if ties else rng.normal(size=n)).astype(np.float32)
    scores[rng.integers(0, n, 3)] = -np.inf
    got = top_k(scores, min(k, n))
    assert len(set(got.tolist())) == len(got) == min(k, n)
    np.testing.assert_array_equal(scores[got], np.sort(scores)[::-1][:min(k, n)])


# --- TLS -----------------------------------------------------------------------------------------

def _self_signed(tmp: Path, name: str, days: float = 1.0, password: bytes | None = None) -> tuple[Path, Path]:
    """A self-signed certificate and its key, valid from 5 minutes ago for `days` (negative:
    expired that long ago); `password` encrypts the key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(minutes=5) + min(datetime.timedelta(days=days) * 2, datetime.timedelta(0))
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(password) if password
                                           else serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_server(tmp_path, run_dir):
    cert, key = _self_signed(tmp_path, "server")
    with EmbeddingServer(load_model(run_dir), port=0, tls=Tls(cert, key)) as s:
        with EmbeddingClient(s.address, tls_ca=cert) as c:
            assert c.health() == "SERVING" and c.neighbors("w1", k=2)
        with EmbeddingClient(s.address, timeout=2) as plain, pytest.raises(ServingError) as e:
            plain.info()
        assert _code(e) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate(tmp_path, run_dir):
    cert, key = _self_signed(tmp_path, "server")
    ccert, ckey = _self_signed(tmp_path, "client")
    with EmbeddingServer(load_model(run_dir), port=0, tls=Tls(cert, key, client_ca=ccert)) as s:
        with EmbeddingClient(s.address, tls_ca=cert, client_cert=(ccert, ckey)) as c:
            assert c.info()["dimension"] == DIM
        with EmbeddingClient(s.address, tls_ca=cert, timeout=2) as anon, pytest.raises(ServingError) as e:
            anon.info()
        assert _code(e) == grpc.StatusCode.UNAVAILABLE


def test_tls_missing_file_is_a_clear_error(tmp_path, run_dir):
    with pytest.raises(FedembedError, match="TLS certificate file not found"):
        EmbeddingServer(load_model(run_dir), port=0, tls=Tls(tmp_path / "nope.crt", tmp_path / "nope.key"))


@pytest.mark.parametrize("case, says", [
    ("cert not PEM", "TLS certificate file {cert} holds no PEM certificate"),
    ("key not PEM", "TLS key file {key} holds no PEM private key"),
    ("key of another certificate", "TLS key file {key} is not the key of the certificate in {cert}"),
    ("encrypted key", "TLS key file {key} is encrypted"),
    ("expired", "TLS certificate {cert} expired on"),
    ("client CA not PEM", "TLS client CA file {ca} holds no PEM certificate"),
])
def test_bad_tls_file_is_named_with_its_fault(tmp_path, run_dir, case, says):
    """gRPC reports every one of these as a failure to bind the port; the server says which
    file is wrong and why, before binding."""
    cert, key = _self_signed(tmp_path, "server", days=-1 if case == "expired" else 1,
                             password=b"secret" if case == "encrypted key" else None)
    ca = None
    if case == "cert not PEM":
        cert.write_text("not a certificate\n")
    elif case == "key not PEM":
        key.write_bytes(b"\x00\x01garbage")
    elif case == "key of another certificate":
        (tmp_path / "other").mkdir()
        key = _self_signed(tmp_path / "other", "other")[1]
    elif case == "client CA not PEM":
        ca = tmp_path / "ca.crt"
        ca.write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    with pytest.raises(FedembedError) as e:
        EmbeddingServer(load_model(run_dir), port=0, tls=Tls(cert, key, client_ca=ca))
    text = str(e.value)
    assert text.startswith(says.format(cert=cert, key=key, ca=ca)) and "\n" not in text, text
    assert "cannot listen" not in text
