"""The gRPC EmbeddingService over one served model, with health checking, limits and TLS.

Every failure a client can cause becomes a status code with a message naming the problem
(NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED); nothing a request holds can crash the
server. Size limits are enforced twice: gRPC refuses oversized messages on the wire, and each
handler refuses batches over `max_batch` and responses that would exceed the message limit
before computing them. A request body that does not parse is INVALID_ARGUMENT (gRPC's own
deserialisation would answer INTERNAL), and at most `max_concurrent_rpcs` calls are admitted at
once (gRPC answers the next RESOURCE_EXHAUSTED rather than queueing it without bound).
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from concurrent import futures
from functools import wraps
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedembed.errors import FedembedError
from fedembed.serving._proto import embedding_service_pb2 as pb
from fedembed.serving._proto import embedding_service_pb2_grpc as pb_grpc
from fedembed.serving.index import BadVector, UnknownWord, shown
from fedembed.serving.limits import Limits
from fedembed.serving.model import ServedModel
from fedembed.serving.tls import Tls

log = logging.getLogger(__name__)
SERVICE = pb.DESCRIPTOR.services_by_name["EmbeddingService"]
SERVICE_NAME = SERVICE.full_name
_BYTES_PER_ITEM = 16  # protobuf framing per repeated element, an upper bound for the size check
__all__ = ["EmbeddingServer", "EmbeddingServicer", "Limits", "Tls", "SERVICE_NAME", "is_loopback"]


class TooLarge(Exception):
    """A request over a configured limit (RESOURCE_EXHAUSTED)."""


class NoText(Exception):
    """EmbedText on a model that embeds no text: FAILED_PRECONDITION."""


class BadRequest(ValueError):
    """A request that can never succeed as written (INVALID_ARGUMENT)."""


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IPs (127.0.0.0/8, ::1, ::ffff:127.x); any other name or
    address (0.0.0.0 and :: included) may be reachable from elsewhere. Names are not resolved."""
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


class Malformed:
    """A request body that is not the method's message (gRPC answers INTERNAL when a deserializer
    raises, so the deserializer returns this and the handler answers INVALID_ARGUMENT)."""

    def __init__(self, message: str, exc: Exception) -> None:
        self.text = f"the request is not a valid {message}: {type(exc).__name__}"


def _parser(cls: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError, or whatever the parser raises on garbage
            return Malformed(cls.DESCRIPTOR.name, exc)
    return parse


F = TypeVar("F", bound=Callable[..., Any])


def _status(fn: F) -> F:
    """Map the index's and the handlers' errors to gRPC status codes, with a one-line message."""
    @wraps(fn)
    def handler(self: "EmbeddingServicer", request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            code, text = grpc.StatusCode.INVALID_ARGUMENT, request.text
        else:
            try:
                return fn(self, request, context)
            except UnknownWord as exc:
                code, text = grpc.StatusCode.NOT_FOUND, str(exc)
            except (BadVector, BadRequest) as exc:
                code, text = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
            except TooLarge as exc:
                code, text = grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
            except NoText as exc:
                code, text = grpc.StatusCode.FAILED_PRECONDITION, str(exc)
            except Exception:  # a bug, not the request: logged with its traceback, the caller told so
                log.exception("%s failed", fn.__name__)
                code, text = grpc.StatusCode.INTERNAL, f"{fn.__name__} failed on the server (see its log)"
        context.abort(code, text)
    return handler  # type: ignore[return-value]


def _word(word: str, what: str) -> str:
    if not word:
        raise BadRequest(f"{what} is empty")
    return word


class EmbeddingServicer(pb_grpc.EmbeddingServiceServicer):
    def __init__(self, model: ServedModel, limits: Limits = Limits()) -> None:
        self.model, self.index, self.limits = model, model.index, limits

    def _batch(self, n: int, what: str, per_item_bytes: int = 0) -> None:
        if n > self.limits.max_batch:
            raise TooLarge(f"{n} {what} in one request; this server's limit is {self.limits.max_batch}")
        if n * (per_item_bytes + _BYTES_PER_ITEM) > self.limits.max_message_bytes:
            raise TooLarge(f"the answer for {n} {what} would exceed this server's message limit of "
                           f"{self.limits.max_message_bytes} bytes")

    def _k(self, k: int) -> int:
        if k <= 0:
            raise BadRequest(f"k must be positive, got {k}")
        self._batch(k, "neighbours (k)", 64)
        return k

    @_status
    def Info(self, request: pb.InfoRequest, context: grpc.ServicerContext) -> pb.InfoResponse:
        m, p = self.model, self.model.privacy
        privacy = pb.Privacy(is_private=p.is_private, unit=p.unit, mechanism=p.mechanism, guarantee=p.guarantee)
        if p.epsilon is not None:
            privacy.epsilon = p.epsilon
        if p.delta is not None:
            privacy.delta = p.delta
        return pb.InfoResponse(model=m.model, dimension=self.index.dim, vocab_size=len(self.index), privacy=privacy,
                               run_name=m.run_name, rounds=m.rounds, index=self.index.kind,
                               oov_vectors=m.oov_vectors, max_batch=self.limits.max_batch,
                               max_message_bytes=self.limits.max_message_bytes,
                               embeds_text=m.embed_text is not None)

    @_status
    def GetVectors(self, request: pb.GetVectorsRequest, context: grpc.ServicerContext) -> pb.GetVectorsResponse:
        self._batch(len(request.words), "words", 4 * self.index.dim)
        return pb.GetVectorsResponse(vectors=[pb.Vector(values=self.index.vector(_word(w, f"word {i}")).tolist())
                                              for i, w in enumerate(request.words)])

    @_status
    def Similarity(self, request: pb.SimilarityRequest, context: grpc.ServicerContext) -> pb.SimilarityResponse:
        self._batch(len(request.pairs), "pairs", 4)
        return pb.SimilarityResponse(cosine=[self.index.similarity(_word(p.a, f"pair {i}'s a"),
                                                                   _word(p.b, f"pair {i}'s b"))
                                             for i, p in enumerate(request.pairs)])

    @_status
    def NearestNeighbors(self, request: pb.NearestNeighborsRequest,
                         context: grpc.ServicerContext) -> pb.NearestNeighborsResponse:
        which = request.WhichOneof("query")
        if which is None:
            raise BadRequest("no query: set either `word` or `vector`")
        k = self._k(request.k)
        hits = (self.index.neighbors(_word(request.word, "query word"), k) if which == "word"
                else self.index.neighbors_of_vector(np.asarray(request.vector.values, dtype=np.float32), k))
        return pb.NearestNeighborsResponse(neighbors=[pb.Neighbor(word=w, score=s) for w, s in hits])

    @_status
    def Analogy(self, request: pb.AnalogyRequest, context: grpc.ServicerContext) -> pb.AnalogyResponse:
        for name in ("a", "b", "c"):
            if not getattr(request, name):
                raise BadRequest(f"analogy word {name!r} is empty (a : b :: c : ?)")
        k = self._k(request.k)
        hits = self.index.analogy(request.a, request.b, request.c, k)
        return pb.AnalogyResponse(answers=[pb.Neighbor(word=w, score=s) for w, s in hits])


    @_status
    def EmbedText(self, request: pb.EmbedTextRequest, context: grpc.ServicerContext) -> pb.EmbedTextResponse:
        if self.model.embed_text is None:
            raise NoText(f"model {self.model.model!r} embeds no text (EmbedText serves a sentence-encoder run)")
        self._batch(len(request.texts), "texts", 4 * self.index.dim)
        for i, t in enumerate(request.texts):
            if not t.strip():
                raise BadRequest(f"text {i} is empty")
        vectors = self.model.embed_text(list(request.texts))
        return pb.EmbedTextResponse(vectors=[pb.Vector(values=v.tolist()) for v in vectors])


def _add_service(servicer: EmbeddingServicer, server: grpc.Server) -> None:
    """What pb_grpc.add_EmbeddingServiceServicer_to_server does, with request parsers that never
    raise (see Malformed)."""
    handlers = {m.name: grpc.unary_unary_rpc_method_handler(
                    getattr(servicer, m.name), request_deserializer=_parser(getattr(pb, m.input_type.name)),
                    response_serializer=getattr(pb, m.output_type.name).SerializeToString)
                for m in SERVICE.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class EmbeddingServer:
    """A started grpc.Server with the EmbeddingService and grpc.health.v1.Health on one port."""

    def __init__(self, model: ServedModel, host: str = "127.0.0.1", port: int = 0, limits: Limits = Limits(),
                 tls: Tls | None = None, workers: int = 4) -> None:
        options = [("grpc.max_receive_message_length", limits.max_message_bytes),
                   ("grpc.max_send_message_length", limits.max_message_bytes),
                   ("grpc.so_reuseport", 0)]  # a port already in use is an error, not a silent share
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="serve"),
                                  options=options, maximum_concurrent_rpcs=limits.max_concurrent_rpcs)
        _add_service(EmbeddingServicer(model, limits), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        credentials = tls.credentials() if tls else None  # a bad TLS file is reported as such, before binding
        try:
            bound = (self.server.add_secure_port(address, credentials) if credentials
                     else self.server.add_insecure_port(address))
        except RuntimeError as exc:
            raise FedembedError(f"cannot listen on {address}: {exc}") from exc
        if not bound:
            raise FedembedError(f"cannot listen on {address} (in use or not a local address?)")
        self.host, self.port, self.tls = host, bound, tls is not None
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        if tls is None and not is_loopback(host):
            log.warning("serving %s without TLS: %s is not a loopback address, so anyone who can reach it "
                        "can query the vectors and read the answers in transit; give --tls-cert and --tls-key "
                        "(or listen on 127.0.0.1)", self.address, shown(host))
        self.server.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on %s%s", model.source, self.address, " (TLS)" if tls else "")

    def stop(self, grace: float | None = 2.0) -> None:
        """Report NOT_SERVING to health watchers, let in-flight calls finish, then close."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()

    def wait(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)

    def __enter__(self) -> "EmbeddingServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(0)
