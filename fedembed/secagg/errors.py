"""The client's SecAgg+ errors; each becomes an error reply, which the server counts as a dropout of that stage."""
from __future__ import annotations

from fedembed.errors import FedembedError


class SecAggClientError(FedembedError):
    """This client cannot go on with the round (missing state, a server asking for too much)."""


class Refused(SecAggClientError):
    """The server asked for something that could unmask this client's update (fedembed.secagg.guard)."""
