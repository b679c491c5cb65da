"""Errors a user can act on: each names the file, line or key at fault."""
from __future__ import annotations


class FedembedError(Exception):
    """Base class: the CLI prints these without a traceback."""


class CorpusError(FedembedError):
    """Unreadable, malformed or empty input data."""


class ConfigError(FedembedError):
    """A scenario or command-line setting that cannot work."""


class UpdateError(FedembedError):
    """A client update that cannot be aggregated (wrong shape, NaN, too large)."""


class CheckpointError(FedembedError):
    """A run directory that cannot be resumed."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (the CLI prints one line per error)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
