"""Property-based fuzzing of the EmbeddingService over a real gRPC server on loopback.

Every request hypothesis draws — words huge, empty, unicode, with control characters, in other
casings or normal forms; vectors with NaN, infinities, huge, tiny or subnormal values, of the
wrong size; any int32 k; raw bytes that are not a request at all — must get the status this
file's own reference model expects, with a one-line message of bounded length, never INTERNAL
or UNKNOWN; and the server must still answer afterwards. Answers that succeed are checked
against a float64 brute force over the same vectors.

The reference model: a word is found as given or in training's normal form (fedembed.data.
tokenize.normalize); "" is INVALID_ARGUMENT; k <= 0 INVALID_ARGUMENT, k > max_batch
RESOURCE_EXHAUSTED; a vector of the wrong size, not finite or all zeros INVALID_ARGUMENT; more
items than max_batch, or a request over the message limit, RESOURCE_EXHAUSTED. When a request
has several faults, any of their statuses is accepted (the protocol does not order them).
"""
from __future__ import annotations

import unicodedata

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fedembed.data.tokenize import normalize
from fedembed.serving import EmbeddingServer, Limits, load_model
from fedembed.serving._proto import embedding_service_pb2 as pb
from fedembed.serving._proto import embedding_service_pb2_grpc as pb_grpc
from fedembed.serving.server import SERVICE_NAME
from fedembed.serving.testing import write_run_dir

DIM = 8
MAX_BATCH = 16
MAX_MESSAGE = 64 * 1024
MAX_DETAILS = 400  # characters of a status message
OK, NOT_FOUND, INVALID, EXHAUSTED = (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND,
                                     grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
WORDS = [f"w{i}" for i in range(120)] + ["king", "queen", "f\u00e9d\u00e9ration", "stra\u00dfe".casefold(),
                                         "\u043f\u0440\u0438\u0432\u0435\u0442", "\u65e5\u672c", "o'neil", "zero"]
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                      HealthCheck.function_scoped_fixture])


def _vectors() -> np.ndarray:
    v = np.random.default_rng(11).normal(size=(len(WORDS), DIM)).astype(np.float32)
    v[WORDS.index("zero")] = 0.0  # a row no client trained
    v[WORDS.index("w7")] *= np.float32(1e25)  # rows far from unit scale
    v[WORDS.index("w8")] *= np.float32(1e-25)
    return v


VECTORS = _vectors()
IDS = {w: i for i, w in enumerate(WORDS)}
UNIT = VECTORS.astype(np.float64) / np.maximum(np.linalg.norm(VECTORS.astype(np.float64), axis=1, keepdims=True),
                                               1e-300)


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    run_dir = write_run_dir(tmp_path_factory.mktemp("fuzz") / "run", WORDS, VECTORS)
    limits = Limits(max_batch=MAX_BATCH, max_message_bytes=MAX_MESSAGE)
    with EmbeddingServer(load_model(run_dir), port=0, limits=limits) as server, \
            grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.EmbeddingServiceStub(channel), channel


# --- what hypothesis draws -------------------------------------------------------------------------

_chars = st.characters(exclude_categories=("Cs",))  # protobuf strings are UTF-8: no lone surrogates
_spellings = st.sampled_from(WORDS).flatmap(lambda w: st.sampled_from([  # all of them found
    w, w.upper(), w.title(), unicodedata.normalize("NFD", w), unicodedata.normalize("NFKD", w),
    w.replace("'", "\u2019")]))
_near_misses = st.sampled_from(WORDS).flatmap(lambda w: st.sampled_from([" " + w, w + "\x00", w + "s"]))
_huge = st.builds(lambda c, n: c * n, st.sampled_from(["x", "\u00e9", "\U0001F600", "\n", "\x00"]),
                  st.integers(200, 30_000))
words = st.one_of(st.sampled_from(WORDS), _spellings, _near_misses, st.text(_chars, max_size=30), _huge,
                  st.just(""), st.text(st.characters(max_codepoint=0x1F), min_size=1, max_size=5))
found = st.one_of(st.sampled_from(WORDS), _spellings)
ks = st.one_of(st.integers(1, MAX_BATCH), st.integers(-3, MAX_BATCH + 3), st.integers(-2**31, 2**31 - 1))
_f32 = st.one_of(st.floats(width=32), st.sampled_from([1e19, -1e30, 3.4e38, 1e-30, 1e-45, -0.0, 0.0]))
vectors = st.one_of(st.lists(_f32, min_size=DIM, max_size=DIM),
                    st.lists(st.floats(-1e3, 1e3, width=32), min_size=DIM, max_size=DIM),
                    st.lists(_f32, max_size=2 * DIM + 1),
                    st.builds(lambda x: [x] * DIM, _f32))


# --- the reference model ---------------------------------------------------------------------------

def _row(word: str) -> int | None:
    i = IDS.get(word)
    return i if i is not None else IDS.get(normalize(word))


def _word_status(word: str) -> grpc.StatusCode:
    if word == "":
        return INVALID
    return OK if _row(word) is not None else NOT_FOUND


def _k_status(k: int) -> grpc.StatusCode:
    return INVALID if k <= 0 else EXHAUSTED if k > MAX_BATCH else OK


def _vector_status(values: list[float]) -> grpc.StatusCode:
    v = np.asarray(values, dtype=np.float32)
    if v.shape != (DIM,) or not np.isfinite(v).all() or not v.any():
        return INVALID
    return OK


def _expected(request, statuses: list[grpc.StatusCode], items: int = 0) -> set[grpc.StatusCode]:
    if request.ByteSize() > MAX_MESSAGE:
        return {EXHAUSTED}  # refused by gRPC before any handler sees it
    bad = {s for s in statuses if s != OK} | ({EXHAUSTED} if items > MAX_BATCH else set())
    return bad or {OK}


def _call(method, request) -> tuple[grpc.StatusCode, str, object]:
    try:
        return OK, "", method(request, timeout=30)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", None


def assert_status(stub, code: grpc.StatusCode, details: str, expected: set[grpc.StatusCode]) -> None:
    event(code.name)  # --hypothesis-show-statistics: how often each status was drawn
    assert code in expected, (code, details[:MAX_DETAILS], expected)
    assert "\n" not in details and "\r" not in details and len(details) <= MAX_DETAILS, details[:1000]
    assert stub[0].Info(pb.InfoRequest(), timeout=30).vocab_size == len(WORDS)  # still answering


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    return np.sort(scores)[::-1][:k]


# --- the properties --------------------------------------------------------------------------------

@settings(FUZZ, max_examples=120)
@given(st.one_of(st.lists(found, max_size=MAX_BATCH), st.lists(words, max_size=MAX_BATCH + 2)))
def test_get_vectors(stub, ws):
    request = pb.GetVectorsRequest(words=ws)
    code, details, answer = _call(stub[0].GetVectors, request)
    assert_status(stub, code, details, _expected(request, [_word_status(w) for w in ws], len(ws)))
    if code == OK:
        assert len(answer.vectors) == len(ws)
        for w, v in zip(ws, answer.vectors):
            np.testing.assert_array_equal(np.array(v.values, dtype=np.float32), VECTORS[_row(w)])


@settings(FUZZ, max_examples=100)
@given(st.one_of(st.lists(st.tuples(found, found), max_size=MAX_BATCH),
                 st.lists(st.tuples(words, words), max_size=MAX_BATCH + 2)))
def test_similarity(stub, pairs):
    request = pb.SimilarityRequest(pairs=[pb.WordPair(a=a, b=b) for a, b in pairs])
    code, details, answer = _call(stub[0].Similarity, request)
    assert_status(stub, code, details, _expected(request, [_word_status(w) for p in pairs for w in p], len(pairs)))
    if code == OK:
        want = [float(UNIT[_row(a)] @ UNIT[_row(b)]) for a, b in pairs]
        np.testing.assert_allclose(list(answer.cosine), want, atol=1e-5)


@settings(FUZZ, max_examples=150)
@given(st.one_of(found, words, vectors, st.none()), ks)
def test_nearest_neighbors(stub, query, k):
    if query is None:
        request, statuses = pb.NearestNeighborsRequest(k=k), [INVALID]  # no query set
    elif isinstance(query, str):
        request = pb.NearestNeighborsRequest(word=query, k=k)
        status = _word_status(query)
        statuses = [INVALID if status == OK and query and not VECTORS[_row(query)].any() else status]
    else:
        request, statuses = pb.NearestNeighborsRequest(vector=pb.Vector(values=query), k=k), [_vector_status(query)]
    code, details, answer = _call(stub[0].NearestNeighbors, request)
    assert_status(stub, code, details, _expected(request, statuses + [_k_status(k)]))
    if code == OK:
        if isinstance(query, str):
            q, skip = UNIT[_row(query)], {_row(query)}
        else:
            q64 = np.asarray(query, dtype=np.float32).astype(np.float64)
            q64 /= np.abs(q64).max()
            q, skip = q64 / np.linalg.norm(q64), set()
        scores = np.delete(UNIT @ q, sorted(skip))
        got = [n.score for n in answer.neighbors]
        assert len(got) == min(k, len(WORDS) - len(skip)) and all(np.isfinite(got))
        assert not skip or WORDS[next(iter(skip))] not in {n.word for n in answer.neighbors}
        np.testing.assert_allclose(got, _top(scores, k), atol=1e-5)


@settings(FUZZ, max_examples=100)
@given(st.one_of(found, words), st.one_of(found, words), st.one_of(found, words), ks)
def test_analogy(stub, a, b, c, k):
    request = pb.AnalogyRequest(a=a, b=b, c=c, k=k)
    statuses = [_word_status(w) for w in (a, b, c)] + [_k_status(k)]
    target = None
    if all(s == OK for s in statuses):
        target = UNIT[_row(b)] - UNIT[_row(a)] + UNIT[_row(c)]
        statuses.append(INVALID if not target.any() else OK)
    expected = _expected(request, statuses)
    near_zero = target is not None and np.abs(target).max() < 1e-5
    if near_zero:  # zero up to rounding: refused or answered, both are right
        expected |= {OK, INVALID}
    code, details, answer = _call(stub[0].Analogy, request)
    assert_status(stub, code, details, expected)
    if code == OK and not near_zero:
        skip = sorted({_row(w) for w in (a, b, c)})
        got = [n.score for n in answer.answers]
        assert len(got) == min(k, len(WORDS) - len(skip))
        assert not {n.word for n in answer.answers} & {WORDS[i] for i in skip}
        np.testing.assert_allclose(got, _top(np.delete(UNIT @ (target / np.linalg.norm(target)), skip), k),
                                   atol=1e-5)


@settings(FUZZ, max_examples=100)
@given(st.sampled_from(["Info", "GetVectors", "Similarity", "NearestNeighbors", "Analogy"]),
       st.one_of(st.binary(max_size=64), st.builds(lambda b: b"\x0a" + bytes([len(b)]) + b, st.binary(max_size=60))))
def test_raw_bytes_never_fail_inside_the_server(stub, method, body):
    """Whatever the bytes, a status the caller can act on: a body that parses is a request like
    any other; one that does not is INVALID_ARGUMENT (never INTERNAL)."""
    raw = stub[1].unary_unary(f"/{SERVICE_NAME}/{method}")
    try:
        raw(body, timeout=30)
        code, details = OK, ""
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
    assert_status(stub, code, details, {OK, NOT_FOUND, INVALID, EXHAUSTED})
