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
