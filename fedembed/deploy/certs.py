"""A private CA and the SuperLink's TLS certificate, made with `cryptography`.

Flower's SuperLink serves its Fleet, Control and Runtime APIs with one certificate
(`--ssl-certfile/--ssl-keyfile/--ssl-ca-certfile`); SuperNodes and the `flwr` CLI verify it
against the CA (`--root-certificates`, `root-certificates` in the Flower config). The
certificate names every host the SuperLink is reached by (always 127.0.0.1 and localhost,
which Flower's own SuperExec uses for the Runtime API), so hostname checks pass.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedembed.errors import ConfigError

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
CA_CERT, SERVER_CERT, SERVER_KEY, CA_KEY = "ca.crt", "server.pem", "server.key", "ca.key"


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path       # give to every SuperNode and to `flwr` (root certificates)
    server_cert: Path   # SuperLink --ssl-certfile
    server_key: Path    # SuperLink --ssl-keyfile (secret)
    ca_key: Path        # signs further certificates; keep offline (secret)

    @classmethod
    def in_dir(cls, directory: Path) -> "TlsFiles":
        d = Path(directory)
        return cls(d / CA_CERT, d / SERVER_CERT, d / SERVER_KEY, d / CA_KEY)

    def check(self) -> "TlsFiles":
        missing = [str(p) for p in (self.ca_cert, self.server_cert, self.server_key) if not p.is_file()]
        if missing:
            raise ConfigError(f"TLS files missing: {', '.join(missing)} (create them with `fedembed certs DIR`)")
        return self


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        if not host or any(c.isspace() or c in "/:@" for c in host):
            raise ConfigError(f"not a host name or IP address: {host!r}") from None
        return x509.DNSName(host)


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """PEM, unencrypted, readable by the owner only (it is created 0600, never widened)."""
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def generate(directory: Path, hosts: list[str] | tuple[str, ...] = (), days: int = 365,
             overwrite: bool = False) -> TlsFiles:
    """Write ca.crt/ca.key and server.pem/server.key for `hosts` (plus 127.0.0.1, localhost)."""
    if days < 1:
        raise ConfigError(f"certificate validity must be at least 1 day, got {days}")
    files = TlsFiles.in_dir(directory)
    existing = [str(p) for p in (files.ca_cert, files.server_cert, files.server_key, files.ca_key) if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"refusing to overwrite {', '.join(existing)} (pass --force to replace them)")
    Path(directory).mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys([*DEFAULT_HOSTS, *hosts]))
    sans = [_san(h) for h in names]
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # tolerate small clock skew
    until = now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedembed CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(until)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(ca_ski, critical=False)
               .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP384R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[-1] if hosts else "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))

    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(files.server_key, key)
    _write_private(files.ca_key, ca_key)
    return files


def hosts_of(cert_path: Path) -> list[str]:
    """The host names/IPs a certificate is valid for (its subjectAltName)."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v) for v in san.get_values_for_type(x509.IPAddress)] + san.get_values_for_type(x509.DNSName)
