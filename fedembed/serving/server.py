"""The gRPC EmbeddingService over one served model, with health checking, limits and TLS.

Every failure a client can cause becomes a status code with a message naming the problem
(NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED); nothing a request holds can crash the
server. Size limits are enforced twice: gRPC refuses oversized messages on the wire, and each
handler refuses batches over `max_batch` and responses that would exceed the message limit
before computing them.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedembed.errors import FedembedError
from fedembed.serving._proto import embedding_service_pb2 as pb
from fedembed.serving._proto import embedding_service_pb2_grpc as pb_grpc
from fedembed.serving.index import BadVector, UnknownWord
from fedembed.serving.model import ServedModel

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EmbeddingService"].full_name
DEFAULT_MAX_BATCH = 1024
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_BYTES_PER_ITEM = 16  # protobuf framing per repeated element, an upper bound for the size check


class TooLarge(Exception):
    """A request over a configured limit (RESOURCE_EXHAUSTED)."""


class BadRequest(ValueError):
    """A request that can never succeed as written (INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class Limits:
    max_batch: int = DEFAULT_MAX_BATCH
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise FedembedError(f"max batch must be at least 1, got {self.max_batch}")
        if self.max_message_bytes < 1024:
            raise FedembedError(f"max message size must be at least 1 KiB, got {self.max_message_bytes} bytes")


@dataclass(frozen=True)
class Tls:
    """PEM files: the server's certificate chain and key; a client CA turns on mutual TLS."""
    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        for what, p in (("certificate", self.cert), ("key", self.key), ("client CA", self.client_ca)):
            if p is not None and not Path(p).is_file():
                raise FedembedError(f"TLS {what} file not found: {p}")
        ca = Path(self.client_ca).read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials([(Path(self.key).read_bytes(), Path(self.cert).read_bytes())],
                                           root_certificates=ca, require_client_auth=ca is not None)


F = TypeVar("F", bound=Callable[..., Any])


def _status(fn: F) -> F:
    """Map the index's and the handlers' errors to gRPC status codes."""
    @wraps(fn)
    def handler(self: "EmbeddingServicer", request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except UnknownWord as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except (BadVector, BadRequest) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except TooLarge as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    return handler  # type: ignore[return-value]


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
                               max_message_bytes=self.limits.max_message_bytes)

    @_status
    def GetVectors(self, request: pb.GetVectorsRequest, context: grpc.ServicerContext) -> pb.GetVectorsResponse:
        self._batch(len(request.words), "words", 4 * self.index.dim)
        return pb.GetVectorsResponse(vectors=[pb.Vector(values=self.index.vector(w).tolist()) for w in request.words])

    @_status
    def Similarity(self, request: pb.SimilarityRequest, context: grpc.ServicerContext) -> pb.SimilarityResponse:
        self._batch(len(request.pairs), "pairs", 4)
        return pb.SimilarityResponse(cosine=[self.index.similarity(p.a, p.b) for p in request.pairs])

    @_status
    def NearestNeighbors(self, request: pb.NearestNeighborsRequest,
                         context: grpc.ServicerContext) -> pb.NearestNeighborsResponse:
        which = request.WhichOneof("query")
        if which is None:
            raise BadRequest("no query: set either `word` or `vector`")
        k = self._k(request.k)
        hits = (self.index.neighbors(request.word, k) if which == "word"
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


class EmbeddingServer:
    """A started grpc.Server with the EmbeddingService and grpc.health.v1.Health on one port."""

    def __init__(self, model: ServedModel, host: str = "127.0.0.1", port: int = 0, limits: Limits = Limits(),
                 tls: Tls | None = None, workers: int = 4) -> None:
        options = [("grpc.max_receive_message_length", limits.max_message_bytes),
                   ("grpc.max_send_message_length", limits.max_message_bytes),
                   ("grpc.so_reuseport", 0)]  # a port already in use is an error, not a silent share
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="serve"),
                                  options=options)
        pb_grpc.add_EmbeddingServiceServicer_to_server(EmbeddingServicer(model, limits), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = (self.server.add_secure_port(address, tls.credentials()) if tls
                     else self.server.add_insecure_port(address))
        except RuntimeError as exc:
            raise FedembedError(f"cannot listen on {address}: {exc}") from exc
        if not bound:
            raise FedembedError(f"cannot listen on {address} (in use or not a local address?)")
        self.host, self.port, self.tls = host, bound, tls is not None
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
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
