"""What one server admits: batch size, message size, calls at once. Plain Python, so that
`fedembed serve` can check its flags before it loads numpy or gRPC."""
from __future__ import annotations

from dataclasses import dataclass

from fedembed.errors import FedembedError

DEFAULT_MAX_BATCH = 1024
MAX_BATCH = 2**31 - 1  # k is an int32 in the protocol
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MIN_MESSAGE_BYTES = 1024
MAX_MESSAGE_BYTES = 2**31 - 1  # gRPC's message-size options are C ints
DEFAULT_MAX_CONCURRENT_RPCS = 32  # calls admitted at once; gRPC answers the next RESOURCE_EXHAUSTED


@dataclass(frozen=True)
class Limits:
    max_batch: int = DEFAULT_MAX_BATCH
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch <= MAX_BATCH:
            raise FedembedError(f"max batch must be 1 to {MAX_BATCH}, got {self.max_batch}")
        if not MIN_MESSAGE_BYTES <= self.max_message_bytes <= MAX_MESSAGE_BYTES:
            raise FedembedError(f"max message size must be {MIN_MESSAGE_BYTES} to {MAX_MESSAGE_BYTES} bytes, "
                                f"got {self.max_message_bytes}")
        if self.max_concurrent_rpcs < 1:
            raise FedembedError(f"max concurrent calls must be at least 1, got {self.max_concurrent_rpcs}")
