"""A SuperNode that runs fedembed's ClientApp in its own process (`fedembed client --runtime inprocess`).

Flower 1.42's `flower-supernode` pays a fixed cost on every message, none of it settable from
outside Flower: the node sleeps 3 s whenever a pull finds nothing, hands each message to a
SuperExec that starts a fresh `flwr-clientapp` process (which imports torch and fedembed again),
and looks for the reply every 0.5 s. About 7 s a message on this machine with the CPU idle; a
SecAgg+ round is four messages in the first round, two after it (docs/BENCHMARKS.md, "Deployment").

This runtime keeps Flower's whole Fleet side — `flwr.supernode.fleet_http_connection`: TLS,
SuperNode authentication with the registered key, heartbeats, retries while the SuperLink is
away — and replaces only what happens on the node: the app is imported once, each message runs
through it in this process, and the node asks for the next message after `poll_min` seconds,
backing off to `poll_max` while there is none. Message contents travel as Flower objects, pulled
and pushed with Flower's own object functions, so the SuperLink and the ServerApp see exactly
what a `flower-supernode` would send.

What it gives up: process isolation between node and app (a crashing app takes the node down
with it, where Flower's SuperExec would start the next message afresh), FAB signature checks
(`--trusted-entities`), and running any app but the one this node was installed with: a run of
another app gets an error reply naming it.
"""
from __future__ import annotations

import importlib
import logging
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from fedembed.errors import ConfigError
from fedembed.federation.stream import Backoff

log = logging.getLogger("fedembed.deploy.node_runtime")  # also when run as __main__

FLOWER, INPROCESS = "flower", "inprocess"  # the node runtimes: Flower's flower-supernode, this module
RUNTIMES = (INPROCESS, FLOWER)
POLL_MIN, POLL_MAX = 0.005, 0.2   # the node's Backoff: a pull 5 ms after a message, at most every 0.2 s idle
MAX_RUNS = 32  # runs whose Context a node keeps (a long-lived device serves run after run)
OBJECT_RETRY_MIN, OBJECT_RETRY_MAX = 0.005, 0.1


def app_reference(fab_content: bytes) -> tuple[str, str]:
    """(project name, ClientApp reference) from a FAB's pyproject.toml."""
    from flwr.common.config import get_fab_config

    cfg = get_fab_config(fab_content)
    return str(cfg["project"]["name"]), str(cfg["tool"]["flwr"]["app"]["components"]["clientapp"])


def load_app(reference: str):
    """The ClientApp object `module:attribute` from this environment (not from the FAB)."""
    from flwr.clientapp import ClientApp

    module, _, attr = reference.partition(":")
    app = getattr(importlib.import_module(module), attr or "app", None)
    if not isinstance(app, ClientApp):
        raise ConfigError(f"{reference} is not a Flower ClientApp")
    return app


@dataclass
class RunInfo:
    """What the node keeps per run: its Context, and why it refuses the run ("" = it does not)."""
    context: Any
    refused: str = ""


class InProcessNode:
    """Pull → run the ClientApp here → push, over Flower's Fleet connection."""

    def __init__(self, project: str, app_ref: str, node_config: dict[str, Any],
                 backoff: Backoff | None = None, mods: Sequence[Callable] = ()) -> None:
        """`mods`: Flower client mods (message, context, call_next) around the app, outermost
        first: this node's own code, whatever the run's FAB holds (fedembed/deploy/policy.py)."""
        self.project, self.app_ref = project, app_ref
        self.node_config = dict(node_config)
        self.backoff = backoff or Backoff(POLL_MIN, POLL_MAX)
        self.app = load_app(app_ref)  # once, before connecting: an import error is the user's to see now
        self.call = _with_mods(self.app, mods)
        self.runs: dict[int, RunInfo] = {}
        self.series: dict[int, Any] = {}  # run series -> its latest Context
        self.handled = 0

    # -- one message ---------------------------------------------------------------------
    def _run_info(self, run_id: int, node_id: int, get_run, get_fab) -> RunInfo:
        from flwr.app import Context, RecordDict
        from flwr.common.config import get_fused_config_from_fab

        if run_id in self.runs:
            self.runs[run_id] = self.runs.pop(run_id)   # the most recently used last
            return self.runs[run_id]
        run = get_run(run_id)
        fab = get_fab(run.fab_hash, run_id)
        refused = ""
        try:
            project, ref = app_reference(fab.content)
        except (KeyError, ValueError) as exc:
            project, ref = "?", f"unreadable ({exc})"
        if (project, ref) != (self.project, self.app_ref):
            refused = (f"this node runs {self.project}'s ClientApp ({self.app_ref}) in process and cannot run "
                       f"{project} ({ref}); start a flower-supernode for it")
        context = Context(run_id=run_id, node_id=node_id, node_config=dict(self.node_config), state=RecordDict(),
                          run_config=get_fused_config_from_fab(fab.content, run), series_id=run.series_id)
        if run.series_id:  # as Flower's SuperNode: a run of the same series starts from the last one's state
            if run.series_id in self.series:
                context.state = self.series[run.series_id].state
            self.series[run.series_id] = context
        info = RunInfo(context, refused)
        self.runs[run_id] = info
        while len(self.runs) > MAX_RUNS:     # the least recently used; a series' latest state stays in `series`
            del self.runs[next(iter(self.runs))]
        return info

    def handle(self, message, run: RunInfo):
        """The reply to one inflated message: the app's, or an error reply (never raises)."""
        from flwr.app import Error, Message
        from flwr.common.constant import ErrorCode

        if run.refused:
            log.error(run.refused)
            return Message(Error(code=ErrorCode.LOAD_CLIENT_APP_EXCEPTION, reason=run.refused), reply_to=message)
        try:
            return self.call(message, run.context)
        except Exception as exc:  # noqa: BLE001 - what flwr-clientapp does: the server gets an error reply
            log.exception("ClientApp raised an exception")
            reason = f"{type(exc)}:<'{exc}'>"
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message)

    def serve(self, conn, stop: threading.Event) -> None:
        """The node's loop on an open Fleet connection, until `stop` is set."""
        from flwr.supercore.run import RunNotRunningException

        receive = conn[1]
        while not stop.is_set():
            try:
                got = receive()
                if got is None:
                    stop.wait(self.backoff.next())
                    continue
                self.backoff.reset()
                self.answer(conn, *got)
            except RunNotRunningException:
                log.info("the run is no longer running; message ignored")
            except Exception:  # noqa: BLE001 - one bad message (objects gone, a reply refused) must not end the node
                log.exception("handling a message failed; the node goes on")
                stop.wait(self.backoff.next())

    def answer(self, conn, head, tree) -> None:
        """Pull the message whose head came, run the app on it, push the reply; log the timings."""
        from flwr.app import Message
        from flwr.supercore.inflatable.inflatable_object import (get_all_nested_objects, get_object_tree,
                                                                 no_object_id_recompute)
        from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree, push_objects
        from flwr.supercore.task_identity import TaskIdentity

        node_id, _, send, get_run, get_fab, pull_object, push_object, confirm = conn
        t0 = time.perf_counter()
        age = max(0.0, time.time() - float(head.metadata.created_at))  # since the ServerApp made it
        run_id = head.metadata.run_id
        run = self._run_info(run_id, node_id, get_run, get_fab)
        requests = [0, 0]  # object pulls (retries included), object pushes: one HTTPS request each

        def pull(oid: str):
            requests[0] += 1
            return pull_object(run_id, oid)

        # The SuperLink hands out a message as soon as the ServerApp pushed its head, maybe
        # before all its objects: Flower retries those after 1 s, doubling to 10 s, at most
        # 500 times; we after 5 ms, doubling to 0.1 s, bounded by Flower's 2 h per object.
        message = pull_and_inflate_object_from_tree(
            tree, pull, lambda mid: confirm(run_id, mid), return_type=Message,
            initial_backoff=OBJECT_RETRY_MIN, backoff_cap=OBJECT_RETRY_MAX, max_tries_per_object=None)
        message.metadata.__dict__["_message_id"] = tree.object_id
        TaskIdentity.run_id, TaskIdentity.node_id = run_id, node_id  # as flwr-clientapp sets them
        t1 = time.perf_counter()
        reply = self.handle(message, run)
        t2 = time.perf_counter()
        reply.metadata.__dict__["_message_id"] = reply.object_id
        with no_object_id_recompute():
            to_push, session = send(reply, get_object_tree(reply), t2 - t1)

            def push(oid: str, content: bytes):
                requests[1] += 1
                return push_object(run_id, session, oid, content)

            push_objects(get_all_nested_objects(reply), push, object_ids_to_push=to_push)
        self.handled += 1
        log.info("%s message (run %s, group %s): %.3fs old when it came, pulled in %.3fs (%d object requests), "
                 "app %.3fs, reply pushed in %.3fs (%d)", message.metadata.message_type, run_id,
                 message.metadata.group_id, age, t1 - t0, requests[0], t2 - t1, time.perf_counter() - t2,
                 requests[1])


def _with_mods(app: Callable, mods: Sequence[Callable]) -> Callable:
    """`app` wrapped in Flower client mods, the first outermost (as `ClientApp(mods=...)` does)."""
    call = app
    for mod in reversed(list(mods)):
        call = (lambda m, next_: lambda message, context: m(message, context, next_))(mod, call)
    return call


def auth_keys(key_path: Path | None):
    """(private, public) EC keys for Flower's node authentication, or None."""
    if key_path is None:
        return None
    from fedembed.deploy.node_keys import load_private

    key = load_private(key_path)
    return key, key.public_key()


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT end the loop after the current message, so the node deactivates itself."""
    def handler(signum, _frame) -> None:
        log.info("signal %s: stopping after the current message", signum)
        stop.set()

    if threading.current_thread() is not threading.main_thread():  # a test's thread: `stop` is the way
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_node(superlink: str, node_config: dict[str, Any], root_certificates: Path | None,
             auth_key: Path | None, project: str = "fedembed", app_ref: str = "client.app:app",
             backoff: Backoff | None = None, max_retries: int | None = None,
             max_wait_time: float | None = None, stop: threading.Event | None = None,
             on_connected: Callable[[int], None] | None = None, mods: Sequence[Callable] = ()) -> int:
    """Connect to the SuperLink and serve messages until a signal (or `stop`); returns messages handled."""
    from flwr.supernode.fleet_http_connection import http_request_response

    node = InProcessNode(project, app_ref, node_config, backoff, mods)
    stop = stop or threading.Event()
    certs = root_certificates.read_bytes() if root_certificates is not None else None
    with _stop_on_signals(stop):
        with http_request_response(superlink, insecure=certs is None, root_certificates=certs,
                                   authentication_keys=auth_keys(auth_key), max_retries=max_retries,
                                   max_wait_time=max_wait_time) as conn:
            from flwr.common.logger import log as flwr_log

            flwr_log(logging.INFO, "SuperNode ID: %s (fedembed in-process runtime)", conn[0])
            if on_connected is not None:
                on_connected(conn[0])
            node.serve(conn, stop)
    return node.handled


def parse_args(argv: list[str] | None = None):
    import argparse

    ap = argparse.ArgumentParser(prog="python -m fedembed.deploy.node_runtime",
                                 description="A SuperNode running fedembed's ClientApp in process (see module doc).")
    ap.add_argument("--superlink", required=True, metavar="HOST:PORT")
    ap.add_argument("--root-certificates", metavar="CA")
    ap.add_argument("--insecure", action="store_true")
    ap.add_argument("--auth-supernode-private-key", metavar="KEY")
    ap.add_argument("--node-config", default="", help="Flower's `key=value ...` list")
    ap.add_argument("--max-retries", type=int)
    ap.add_argument("--max-wait-time", type=float)
    ap.add_argument("--poll-min", type=float, default=POLL_MIN)
    ap.add_argument("--poll-max", type=float, default=POLL_MAX)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The same flags as `flower-supernode` where they overlap (what LocalFederation starts)."""
    from flwr.common.config import parse_config_args

    args = parse_args(argv)
    if args.insecure == bool(args.root_certificates):
        raise ConfigError("give exactly one of --root-certificates CA and --insecure")
    node_config = parse_config_args([args.node_config]) if args.node_config else {}
    run_node(args.superlink, node_config, Path(args.root_certificates) if args.root_certificates else None,
             Path(args.auth_supernode_private_key) if args.auth_supernode_private_key else None,
             backoff=Backoff(args.poll_min, args.poll_max), max_retries=args.max_retries,
             max_wait_time=args.max_wait_time)
    return 0


def log_to_stderr() -> None:
    """The node's own lines (one per message, with its timings) beside Flower's."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("fedembed").addHandler(handler)
    logging.getLogger("fedembed").setLevel(logging.INFO)


if __name__ == "__main__":
    import sys

    log_to_stderr()
    sys.exit(main())
