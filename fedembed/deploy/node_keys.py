"""SuperNode authentication keys in the format Flower 1.42 expects.

`flower-supernode --auth-supernode-private-key` reads an OpenSSH private key and
`flwr supernode register` an OpenSSH public key, both on a NIST EC curve (Flower's own
docs use `ssh-keygen -t ecdsa -b 384`). We write the same with `cryptography`:
`node_<i>` (private, 0600) and `node_<i>.pub` per node.
"""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedembed.errors import ConfigError


def key_paths(directory: Path, index: int) -> tuple[Path, Path]:
    """(private, public) key paths of node `index`."""
    stem = Path(directory) / f"node_{index}"
    return stem, stem.with_name(stem.name + ".pub")


def write_pair(private_path: Path, public_path: Path, comment: str = "") -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    private_path.unlink(missing_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    public_path.write_bytes(public + (f" {comment}".encode() if comment else b"") + b"\n")


def generate(directory: Path, count: int, start: int = 0, overwrite: bool = False) -> list[tuple[Path, Path]]:
    """Key pairs for nodes start..start+count-1 in `directory`."""
    if count < 1:
        raise ConfigError(f"number of node keys must be at least 1, got {count}")
    if start < 0:
        raise ConfigError(f"first node index must be >= 0, got {start}")
    pairs = [key_paths(directory, i) for i in range(start, start + count)]
    existing = [str(p) for pair in pairs for p in pair if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"refusing to overwrite {', '.join(existing[:4])}{' …' if len(existing) > 4 else ''} "
                          f"(pass --force to replace them)")
    Path(directory).mkdir(parents=True, exist_ok=True)
    for i, (priv, pub) in zip(range(start, start + count), pairs):
        write_pair(priv, pub, comment=f"fedembed-node-{i}")
    return pairs


def load_private(path: Path) -> ec.EllipticCurvePrivateKey:
    """Check a private key file the way flower-supernode will read it, with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"node key file does not exist: {path}")
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted OpenSSH private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is not an EC key (Flower needs ECDSA on a NIST curve)")
    return key
