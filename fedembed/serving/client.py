"""A small Python client for `fedembed serve`: plain values in, plain values out.

    with EmbeddingClient("127.0.0.1:50051") as c:
        c.info()["privacy"]["guarantee"]
        c.neighbors("king", k=10)          # [(word, cosine), ...]

Server-side refusals raise ServingError carrying the gRPC status code, so callers can tell
an unknown word (NOT_FOUND) from a bad argument or an over-limit request.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedembed.errors import FedembedError
from fedembed.serving._proto import embedding_service_pb2 as pb
from fedembed.serving._proto import embedding_service_pb2_grpc as pb_grpc


class ServingError(FedembedError):
    """A call the server refused or that failed on the wire; `code` is the grpc.StatusCode."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class EmbeddingClient:
    def __init__(self, target: str, *, tls_ca: str | Path | bytes | None = None, tls: bool = False,
                 client_cert: tuple[str | Path, str | Path] | None = None, server_name: str | None = None,
                 timeout: float | None = 10.0, max_message_bytes: int = 4 * 1024 * 1024) -> None:
        """`tls_ca` (PEM path or bytes) or `tls=True` (system roots) selects TLS; `client_cert`
        is (cert, key) PEM paths for mutual TLS; `server_name` overrides the name checked
        against the server's certificate."""
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", max_message_bytes),
                                          ("grpc.max_send_message_length", max_message_bytes)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if tls_ca is not None or tls or client_cert:
            ca = Path(tls_ca).read_bytes() if isinstance(tls_ca, (str, Path)) else tls_ca
            cert, key = ((Path(client_cert[0]).read_bytes(), Path(client_cert[1]).read_bytes())
                         if client_cert else (None, None))
            creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.EmbeddingServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.timeout = timeout

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise ServingError(exc.code(), exc.details() or "") from None

    def info(self) -> dict[str, Any]:
        r = self._call(self.stub.Info, pb.InfoRequest())
        p = r.privacy
        return {"model": r.model, "dimension": r.dimension, "vocab_size": r.vocab_size, "run_name": r.run_name,
                "rounds": r.rounds, "index": r.index, "oov_vectors": r.oov_vectors, "max_batch": r.max_batch,
                "max_message_bytes": r.max_message_bytes,
                "privacy": {"is_private": p.is_private, "epsilon": p.epsilon if p.HasField("epsilon") else None,
                            "delta": p.delta if p.HasField("delta") else None, "unit": p.unit,
                            "mechanism": p.mechanism, "guarantee": p.guarantee}}

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        """[len(words), dim] float32, rows in the order asked."""
        r = self._call(self.stub.GetVectors, pb.GetVectorsRequest(words=list(words)))
        if not r.vectors:
            return np.zeros((0, 0), dtype=np.float32)
        return np.array([v.values for v in r.vectors], dtype=np.float32).reshape(len(r.vectors), -1)

    def similarity(self, pairs: Iterable[tuple[str, str]]) -> list[float]:
        req = pb.SimilarityRequest(pairs=[pb.WordPair(a=a, b=b) for a, b in pairs])
        return list(self._call(self.stub.Similarity, req).cosine)

    def neighbors(self, query: str | Sequence[float] | np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """Nearest words to a word (itself excluded) or to a vector, best first."""
        req = (pb.NearestNeighborsRequest(word=query, k=k) if isinstance(query, str)
               else pb.NearestNeighborsRequest(vector=pb.Vector(values=np.asarray(query, np.float32).tolist()), k=k))
        return [(n.word, n.score) for n in self._call(self.stub.NearestNeighbors, req).neighbors]

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        """a : b :: c : ?"""
        req = pb.AnalogyRequest(a=a, b=b, c=c, k=k)
        return [(n.word, n.score) for n in self._call(self.stub.Analogy, req).answers]

    def health(self, service: str = "") -> str:
        """grpc.health.v1 status name: SERVING, NOT_SERVING, ... ("" = the whole server)."""
        r = self._call(self.health_stub.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "EmbeddingClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
