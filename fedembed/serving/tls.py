"""The server's TLS files, checked before gRPC sees them.

gRPC reports an unreadable certificate, a key that is not a key, or a key of another
certificate only as a failure to bind the port (its reason goes to its own C log). Each file is
parsed here first, so a mistake is reported as what it is: which file, and why.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fedembed.errors import FedembedError

if TYPE_CHECKING:
    import grpc


@dataclass(frozen=True)
class Tls:
    """PEM files: the server's certificate chain and key; a client CA turns on mutual TLS."""
    cert: Path
    key: Path
    client_ca: Path | None = None

    def check(self) -> None:
        """FedembedError naming the file at fault: missing, unreadable, not PEM of the right kind,
        an encrypted key, a key that does not belong to the certificate, a certificate out of date."""
        check_files(Path(self.cert), Path(self.key), Path(self.client_ca) if self.client_ca else None)

    def credentials(self) -> "grpc.ServerCredentials":
        import grpc

        self.check()
        ca = Path(self.client_ca).read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials([(Path(self.key).read_bytes(), Path(self.cert).read_bytes())],
                                           root_certificates=ca, require_client_auth=ca is not None)


def _read(what: str, path: Path) -> bytes:
    if not path.is_file():
        raise FedembedError(f"TLS {what} file not found: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FedembedError(f"TLS {what} file {path} cannot be read: {exc.strerror or exc}") from None


def _certificates(what: str, path: Path) -> list:
    from cryptography import x509

    data = _read(what, path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise FedembedError(f"TLS {what} file {path} holds no PEM certificate "
                            f"(expected '-----BEGIN CERTIFICATE-----' blocks): {_first_line(exc)}") from None
    return certs


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_files(cert: Path, key: Path, client_ca: Path | None = None,
                now: dt.datetime | None = None) -> None:
    """See Tls.check; `now` is for tests."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    chain = _certificates("certificate", cert)
    data = _read("key", key)
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's way of saying a password is needed
        raise FedembedError(f"TLS key file {key} is encrypted; gRPC needs an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise FedembedError(f"TLS key file {key} holds no PEM private key: {_first_line(exc)}") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise FedembedError(f"TLS key file {key} is not the key of the certificate in {cert}")
    now = now or dt.datetime.now(dt.timezone.utc)
    leaf = chain[0]
    if leaf.not_valid_after_utc < now:
        raise FedembedError(f"TLS certificate {cert} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if leaf.not_valid_before_utc > now:
        raise FedembedError(f"TLS certificate {cert} is not valid before "
                            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    if client_ca is not None:
        _certificates("client CA", client_ca)
