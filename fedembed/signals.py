"""Signal handlers around code that forks worker processes (see default_signal_handlers)."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def default_signal_handlers() -> Iterator[None]:
    """Default SIGTERM/SIGINT/SIGQUIT handlers while the block runs.

    The built-in corpus is parsed by gensim's WikiCorpus, which forks a multiprocessing
    Pool and ends it with SIGTERM. Under Flower's deployment runtime the ClientApp (and
    ServerApp) process has Flower's graceful-exit handler on SIGTERM; a forked worker
    inherits it, and on SIGTERM it reports the *parent's* task as finished to the SuperNode
    (SuperLink), whose later calls then fail with "task-token authentication failed".
    Workers forked inside this block get the default handlers instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; Flower's are set there too
        return
    sigs = [s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGQUIT", None)) if s is not None]
    saved = {s: signal.getsignal(s) for s in sigs}
    try:
        for s in sigs:
            signal.signal(s, signal.SIG_DFL if s != signal.SIGINT else signal.default_int_handler)
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
