"""fedembed's in-process SuperNode (fedembed/deploy/node_runtime.py) against a Fleet connection
double that moves messages the way Flower's does: heads and object trees, each object's deflated
bytes pulled and pushed by id, inflated with Flower's own functions.

Processes end to end (a real SuperLink with TLS and node auth, a restart, `flwr run`) are in
tests/test_deploy_e2e.py and tests/test_deploy.py (slow).
"""
from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import pytest

from fedembed.deploy import node_runtime
from fedembed.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

APP_MODULE = '''
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.query()
def query(msg, context):
    seen = int(context.state["seen"]["n"]) + 1 if "seen" in context.state else 1
    context.state["seen"] = ConfigRecord({"n": seen})
    x = int(msg.content["q"]["x"])
    return Message(RecordDict({"r": ConfigRecord({"twice": 2 * x, "seen": seen,
                                                  "partition": int(context.node_config["partition-id"]),
                                                  "rounds": int(context.run_config["rounds"]), "out": str(context.run_config["out"])})}), reply_to=msg)


@app.train()
def train(msg, context):
    raise ValueError("no data here")
'''


def fab(name: str = "fedembed", clientapp: str = "nodeapp_test:app") -> bytes:
    """A FAB (zip) whose pyproject.toml is ours with the project name and ClientApp replaced."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    text = text.replace('name = "fedembed"', f'name = "{name}"', 1)
    text = text.replace('clientapp = "client.app:app"', f'clientapp = "{clientapp}"', 1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pyproject.toml", text)
    return buf.getvalue()


class FakeFleet:
    """The eight callables of `http_request_response`, backed by dicts; stops the node when drained."""

    def __init__(self, messages, fab_content: bytes, stop: threading.Event, unavailable_once: bool = False,
                 series: int = 0):
        from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree

        self.queue = list(messages)
        self.fab_content, self.stop = fab_content, stop
        self.objects: dict[str, bytes] = {}
        for m in self.queue:
            m.metadata.__dict__["_message_id"] = m.object_id
            self.objects.update({oid: obj.deflate() for oid, obj in get_all_nested_objects(m).items()})
        self.trees = [get_object_tree(m) for m in self.queue]
        self.missing = set(self.objects) if unavailable_once else set()
        self.confirmed: list[str] = []
        self.replies: list = []
        self.pushed: dict[str, bytes] = {}
        self.runs_fetched, self.series = 0, series

    def conn(self):
        return (42, self.receive, self.send, self.get_run, self.get_fab, self.pull_object, self.push_object,
                self.confirm)

    def receive(self):
        from flwr.app.message import remove_content_from_message

        if not self.queue:
            self.stop.set()
            return None
        return remove_content_from_message(self.queue.pop(0)), self.trees.pop(0)

    def get_run(self, run_id):
        from flwr.supercore.run import Run

        self.runs_fetched += 1
        run = Run.create_empty(run_id)
        run.fab_hash, run.override_config, run.series_id = "h", {"rounds": run_id}, self.series
        return run

    def get_fab(self, fab_hash, run_id):
        from flwr.supercore.fab import Fab

        return Fab(fab_hash, self.fab_content, {})

    def pull_object(self, run_id, object_id):
        from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError

        if object_id in self.missing:  # the SuperLink handed out the head before this object arrived
            self.missing.discard(object_id)
            raise ObjectUnavailableError(object_id)
        return self.objects[object_id]

    def confirm(self, run_id, message_id):
        self.confirmed.append(message_id)

    def send(self, reply, tree, runtime):
        from flwr.supercore.inflatable.inflatable_object import iterate_object_tree

        self.replies.append((reply.metadata, tree))
        return {t.object_id for t in iterate_object_tree(tree)}, "session"

    def push_object(self, run_id, session, object_id, content):
        assert session == "session"
        self.pushed[object_id] = content

    def reply(self, i: int):
        from flwr.app import Message
        from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

        meta, tree = self.replies[i]
        msg = inflate_object_from_contents(tree.object_id, self.pushed)
        assert isinstance(msg, Message)
        return meta, msg


@pytest.fixture
def app_module(tmp_path, monkeypatch):
    (tmp_path / "nodeapp_test.py").write_text(APP_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "nodeapp_test:app"


def query(x: int, run_id: int = 7, msg_type: str = "query"):
    from flwr.app import ConfigRecord, Message, RecordDict

    m = Message(RecordDict({"q": ConfigRecord({"x": x})}), dst_node_id=42, message_type=msg_type, group_id="1")
    m.metadata.__dict__["_run_id"] = run_id
    return m


def serve(app_ref, messages, fab_content, **fleet_kw) -> tuple[node_runtime.InProcessNode, FakeFleet]:
    stop = threading.Event()
    fleet = FakeFleet(messages, fab_content, stop, **fleet_kw)
    node = node_runtime.InProcessNode("fedembed", app_ref, {"partition-id": 3, "num-partitions": 4},
                                      node_runtime.Backoff(0.001, 0.002))
    node.serve(fleet.conn(), stop)
    return node, fleet


def test_messages_run_through_the_app_with_one_context_per_run(app_module, task_identity):
    from flwr.common.constant import ErrorCode

    node, fleet = serve(app_module, [query(5), query(6), query(1, msg_type="train")], fab(clientapp=app_module),
                        unavailable_once=True)
    assert node.handled == 3 and fleet.runs_fetched == 1  # run and FAB fetched once per run
    assert len(fleet.confirmed) == 3
    out = [fleet.reply(i) for i in range(3)]
    first, second = (msg.content["r"] for _, msg in out[:2])
    # The app saw the node config, the run config fused from the FAB and the run's override,
    # and its context.state persisted from one message to the next.
    assert (first["twice"], first["seen"], first["partition"], first["rounds"], first["out"]) == (10, 1, 3, 7, "runs/flwr")
    assert (second["twice"], second["seen"]) == (12, 2)
    meta, failed = out[2]
    assert failed.has_error() and failed.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert "no data here" in failed.error.reason
    assert [meta.reply_to_message_id for meta, _ in out] == fleet.confirmed


@pytest.mark.parametrize("series", [0, 5])
def test_a_new_run_gets_a_new_context_and_its_series_state(app_module, task_identity, series):
    node, fleet = serve(app_module, [query(1, run_id=7), query(2, run_id=7), query(3, run_id=8)],
                        fab(clientapp=app_module), series=series)
    assert fleet.runs_fetched == 2
    replies = [fleet.reply(i)[1].content["r"] for i in range(3)]
    assert [r["rounds"] for r in replies] == [7, 7, 8]  # each run's own config
    # Flower carries context.state from run to run only within a run series (series_id != 0).
    assert [r["seen"] for r in replies] == ([1, 2, 3] if series else [1, 2, 1])


def test_a_long_lived_node_keeps_only_its_latest_runs(app_module, task_identity, monkeypatch):
    monkeypatch.setattr(node_runtime, "MAX_RUNS", 2)
    node, fleet = serve(app_module, [query(1, run_id=7), query(2, run_id=8), query(3, run_id=9),
                                     query(4, run_id=8), query(5, run_id=7)], fab(clientapp=app_module))
    assert list(node.runs) == [8, 7] and fleet.runs_fetched == 4    # run 7 was dropped, then fetched anew
    assert [fleet.reply(i)[1].content["r"]["seen"] for i in range(5)] == [1, 1, 1, 2, 1]


def test_a_run_of_another_app_gets_an_error_reply(app_module, task_identity):
    from flwr.common.constant import ErrorCode

    node, fleet = serve(app_module, [query(5)], fab(name="someone-else", clientapp="their.app:app"))
    _, reply = fleet.reply(0)
    assert reply.has_error() and reply.error.code == ErrorCode.LOAD_CLIENT_APP_EXCEPTION
    assert "someone-else" in reply.error.reason and "flower-supernode" in reply.error.reason


def test_a_broken_message_does_not_end_the_node(app_module, task_identity):
    stop = threading.Event()
    fleet = FakeFleet([query(5), query(6)], fab(clientapp=app_module), stop)
    for t in fleet.trees[0].children:  # the first message's content is gone from the SuperLink for good
        fleet.objects.pop(t.object_id)
    node = node_runtime.InProcessNode("fedembed", app_module, {"partition-id": 0},
                                      node_runtime.Backoff(0.001, 0.002))
    node.serve(fleet.conn(), stop)
    assert node.handled == 1 and len(fleet.replies) == 1  # the second message was still answered
    assert fleet.reply(0)[1].content["r"]["twice"] == 12


def test_backoff_doubles_to_its_cap_and_resets():
    b = node_runtime.Backoff(0.01, 0.05)
    assert [b.next() for _ in range(5)] == [0.01, 0.02, 0.04, 0.05, 0.05]
    b.reset()
    assert b.next() == 0.01
    for low, high in ((0, 1), (0.5, 0.1), (-1, 1)):
        with pytest.raises(ConfigError, match="poll interval"):
            node_runtime.Backoff(low, high)


def test_only_a_flower_clientapp_is_loaded(app_module):
    assert node_runtime.load_app(app_module) is not None
    with pytest.raises(ConfigError, match="not a Flower ClientApp"):
        node_runtime.load_app("nodeapp_test:query")
    assert node_runtime.app_reference(fab()) == ("fedembed", "nodeapp_test:app")
    assert node_runtime.app_reference(fab(clientapp="client.app:app")) == ("fedembed", "client.app:app")


def test_the_node_command_refuses_bad_tls_flags():
    with pytest.raises(ConfigError, match="exactly one"):
        node_runtime.main(["--superlink", "127.0.0.1:1"])
    with pytest.raises(ConfigError, match="exactly one"):
        node_runtime.main(["--superlink", "127.0.0.1:1", "--insecure", "--root-certificates", "ca.crt"])


def test_deployed_grid_retries_missing_objects_soon(monkeypatch):
    from flwr.superlink.grid import http_grid

    from fedembed.federation import stream

    # HttpGrid.pull_messages calls the module's pull_objects: what fast_object_retries replaces.
    assert "pull_objects" in http_grid.HttpGrid.pull_messages.__code__.co_names
    got = []

    def flower_pull(object_ids, pull_object_fn, **kw):  # stands in for Flower's pull_objects
        got.append(kw)
        return {}

    monkeypatch.setattr(http_grid, "pull_objects", flower_pull)
    assert stream.fast_object_retries() and stream.fast_object_retries()
    assert http_grid.pull_objects.func is flower_pull  # wrapped once
    http_grid.pull_objects([], None)
    assert got == [{"initial_backoff": stream.OBJECT_RETRY_S, "backoff_cap": stream.MAX_OBJECT_RETRY_S,
                    "max_tries_per_object": None}]  # Flower's 500 tries would be ~50 s at this pace
