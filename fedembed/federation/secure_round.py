"""The server side of one secure round over Flower's Grid (`secagg.enabled`): SecAgg+ in stages.

  (keys)   query.secagg_keys    only nodes whose channel key the server lacks (the first round)
  share    train.secagg_share   neighbours' channel keys down; mask key + sealed shares up
  mask     train.secagg_mask    the global tables, peers' mask keys, shares down; training
                                happens here; the masked, quantized update up
  unmask   train.secagg_unmask  who survived down; the shares needed to unmask up

Three round trips a round (the plain path has one), or two with `secagg.share_ahead` (the
default): round r's unmask exchange also asks round r + 1's clients for their shares, so a
round that follows another starts at its mask stage, and asks the clients of rounds r + 1
and r + 2 that never advertised a channel key for it, so that a sampled federation's new
clients do not hold a round up with a keys exchange (and can share ahead a round later). The
clients of those rounds are drawn early (they do not depend on round r). A client whose
combined message failed as a whole is asked for its shares again at round r + 1, one whose
share answer failed sits that round out, as in a round of its own; a key that did not come
is asked for again when its round comes. The tables go down and the update comes up once each, as in the
plain path. The server folds each masked vector into a running sum
mod 2^w; it never holds an unmasked individual update. If the survivors are too few, or
some secret cannot be reconstructed (too many dropouts), the round aborts: the global
tables are left as they were, metrics.jsonl gets the round with `"event": "secagg_abort"` and
the reason, and the next round goes on; the round is still charged to the privacy ledger
(whether it aborts depends on who was sampled and who dropped: fedembed/privacy/session.py).
Under distributed DP the survivors must number at least the floor the clients' noise shares
were calibrated for (fedembed/secagg/params.py `survivor_floor`), and the ledger is charged
before the unmask exchange, which is what releases the sum.

A masked reply is the vector alone: the round's loss, examples and range-clip count come from
sums inside it (fedembed/secagg/tally.py; none under user-level DP). With a pool of nodes
(`simulation.nodes`, and `flwr run` on fewer SuperNodes than clients) each exchange sends a
node one message for all of its clients (fedembed/federation/pool_batch.py).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from flwr.app import Message, RecordDict

from fedembed.errors import FedembedError
from fedembed.federation import pool, pool_batch, stream, wire
from fedembed.federation.accept import ReplySink
from fedembed.federation.transport import Collected, RoundPlan
from fedembed.observe import Observation
from fedembed.privacy import record_state
from fedembed.privacy.distributed import share_std
from fedembed.privacy.user_dp import CLIP_BIT
from fedembed.secagg import messages as msg
from fedembed.secagg.params import STAGES, RoundParams, for_round, survivor_floor
from fedembed.secagg.quantize import Layout
from fedembed.secagg.server import KeyBook, SecAggAbort, ServerRound
from fedembed.secagg.tally import CLIPPED, EXAMPLES, LOSS_SUM, Tally, names_for

log = logging.getLogger(__name__)


class _Exchange:
    """Send one stage's messages, collect the answers; failures are dropouts of that stage.
    `pooled`: the clients live on a pool of nodes, each sent one message an exchange for all
    of its clients (fedembed/federation/pool_batch.py)."""

    def __init__(self, grid, nodes: dict[int, int], rnd: int, timeout: float | None, pooled: bool = False) -> None:
        self.grid, self.nodes, self.rnd, self.timeout, self.pooled = grid, nodes, rnd, timeout, pooled
        self.partition_of = {n: p for p, n in nodes.items()}
        self.bytes_up = self.bytes_down = 0
        self.failures: dict[str, dict[int, str]] = {s: {} for s in STAGES}   # stage → partition → reason
        self.seconds: dict[str, float] = {}                                    # stage → wall time of its exchange

    def send(self, contents: dict[int, tuple[str, str, RecordDict]]) -> tuple[dict[int, RecordDict], dict[int, str]]:
        """partition → (message type, group, content) out; (answers, why the others failed) back."""
        if self.pooled:
            return self._send_pooled(contents)
        msgs = [Message(content=c, dst_node_id=self.nodes[p], message_type=mtype, group_id=group)
                for p, (mtype, group, c) in contents.items()]
        self.bytes_down += sum(_size(c) for _, _, c in contents.values())
        out: dict[int, RecordDict] = {}
        failed: dict[int, str] = {}
        for reply in stream.send_and_receive(self.grid, msgs, 0, self.timeout) if msgs else []:
            pid = self.partition_of.get(reply.metadata.src_node_id)
            if pid is None or pid not in contents:
                continue
            if reply.has_error():
                failed[pid] = str(reply.error.reason)
                continue
            self.bytes_up += _size(reply.content)
            out[pid] = reply.content
        for p in set(contents) - set(out) - set(failed):
            failed[p] = "no answer in time"
        return out, failed

    def _send_pooled(self, contents: dict[int, tuple[str, str, RecordDict]]
                     ) -> tuple[dict[int, RecordDict], dict[int, str]]:
        """`send` to pool nodes: one batch per node, its reply split back into its clients'."""
        hosted: dict[int, dict[int, tuple[str, RecordDict]]] = {}
        groups: dict[int, str] = {}
        for p, (mtype, group, c) in contents.items():
            hosted.setdefault(self.nodes[p], {})[p] = (mtype, c)
            groups.setdefault(self.nodes[p], group)
        msgs = []
        for node, items in hosted.items():
            batch = pool_batch.batch_content(items)
            self.bytes_down += _size(batch)
            msgs.append(Message(content=batch, dst_node_id=node, message_type=pool_batch.BATCH, group_id=groups[node]))
        out: dict[int, RecordDict] = {}
        failed: dict[int, str] = {}
        for reply in stream.send_and_receive(self.grid, msgs, 0, self.timeout) if msgs else []:
            asked = list(hosted.get(reply.metadata.src_node_id, {}))
            if reply.has_error():
                failed.update({p: str(reply.error.reason) for p in asked})
                continue
            self.bytes_up += _size(reply.content)
            try:
                replies, errors = pool.split_reply(reply.content, asked)
            except FedembedError as exc:
                failed.update({p: f"malformed reply of its pool node: {exc}" for p in asked})
                continue
            out.update(replies)
            failed.update(errors)
        for p in set(contents) - set(out) - set(failed):
            failed[p] = "no answer in time"
        return out, failed

    def __call__(self, stage: str, mtype: str, contents: dict[int, RecordDict]) -> dict[int, RecordDict]:
        t0 = time.perf_counter()
        out, failed = self.send({p: (mtype, f"{self.rnd}.{stage}", c) for p, c in contents.items()})
        self.failures[stage].update(failed)
        self.seconds[stage] = time.perf_counter() - t0
        return out

    def accept(self, stage: str, pid: int, fold, content: RecordDict) -> bool:
        """Fold one reply into the round; a malformed one counts as that client's dropout."""
        why = _fold(pid, fold, content)
        if why is None:
            return True
        self.failures[stage][pid] = why
        log.warning("round %d, stage %s: refused the reply of partition %d: %s", self.rnd, stage, pid, why)
        return False


def _fold(pid: int, fold, content: RecordDict) -> str | None:
    """None when `fold` took the reply, else why it was refused."""
    try:
        fold(pid, content)
        return None
    except (FedembedError, KeyError, ValueError, TypeError) as exc:
        return f"malformed reply: {exc}"


def _size(content: RecordDict) -> int:
    """Bytes of arrays plus the byte strings of config records (keys, sealed shares)."""
    n = wire.nbytes(content)
    for rec in content.config_records.values():
        for v in rec.values():
            if isinstance(v, bytes):
                n += len(v)
            elif isinstance(v, list):
                n += sum(len(x) if isinstance(x, bytes) else 8 for x in v)
    return n


class SecureTransport:
    """SecAgg+ rounds; what one round carries to the next (the channel keys it learned, the next
    round already set up by sharing ahead) lives here, for the run."""
    name = "secagg+"

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.book = KeyBook()                       # each node's channel key
        self.ahead: ServerRound | None = None       # the next round, its shares asked for already
        self.refused: dict[int, str] = {}           # its clients whose share answer failed

    def collect(self, grid, plan: RoundPlan, sink: ReplySink) -> Collected:
        """One secure round. The sums it returns already carry the clients' noise shares under
        distributed DP (`noise_in_sums`); an abort returns no sums and says why."""
        cfg, rnd, clients, privacy = self.cfg, plan.rnd, plan.clients, sink.privacy
        s = cfg.secagg
        drops = {st: getattr(s, f"drop_{st}") for st in STAGES}
        book = self.book
        ahead, refused, self.ahead, self.refused = self.ahead, self.refused, None, {}
        ex = _Exchange(grid, plan.nodes, rnd, cfg.federation.round_timeout or None, bool(cfg.simulation.nodes))
        privacy.observe(record_state.secure_bound(cfg))   # record-level ε: no client's travels; the bound that holds
        survivors: set[int] = set()
        srv = None
        try:
            need = [p for p in clients if p not in book.channel]
            for p, c in ex("keys", msg.KEYS, {p: _keys_query(cfg, rnd) for p in need}).items():
                ex.accept("keys", p, book.learn, c)
            pids = [p for p in clients if p in book.channel]
            if len(pids) < s.min_clients:
                raise SecAggAbort(f"round {rnd}: {len(pids)} client(s) have keys, fewer than "
                                  f"secagg.min_clients = {s.min_clients}")
            params = _params(cfg, len(pids), privacy)
            adaptive = privacy.user is not None and privacy.user.params.adaptive   # clip bit summed securely
            tally = Tally(names_for(privacy.user is not None, cfg.privacy.record.enabled), params.bits)
            layout = Layout(plan.shapes, (1 if adaptive else 0) + tally.size)   # the metric sums go last
            if ahead is not None and ahead.rnd == rnd and ahead.pids == sorted(pids):
                srv = ahead
                srv.retune(params)
                ex.failures["share"].update(refused)
                ask = [p for p in pids if p not in srv.u1 and p not in refused]
            else:
                srv = ServerRound(pids, book, params, rnd, layout, cfg.seed, drops, tally)
                ask = pids
            if ask:
                for p, c in ex("share", msg.SHARE, {p: srv.share_content(p) for p in ask}).items():
                    ex.accept("share", p, srv.on_share, c)
            for p, why in ex.failures["share"].items():
                if "channel key" in why:            # the node lost or changed its key: ask again next round
                    book.channel.pop(p, None)
            floor = survivor_floor(cfg, len(srv.u1))   # noise complete for any `floor` survivors
            noise_std = privacy.noise_share_std(floor)
            bit_std = share_std(privacy.user.params.bit_stddev, floor) if adaptive else 0.0
            dither = privacy.user is not None and privacy.distributed
            contents = {}
            for p in sorted(srv.u1):
                content = RecordDict(dict(sink.copies.content_for(p, plan.content).items()))
                content[msg.SECAGG] = srv.mask_record(p, noise_std, dither, bit_std, floor)
                contents[p] = content
            for p, c in ex("mask", msg.MASK, contents).items():
                if not ex.accept("mask", p, lambda p_, c_: srv.add_masked(p_, msg.masked_of(c_)), c):
                    continue
                seen = None
                if sink.observers:
                    tables, weights = srv.quantizer.layout.split(msg.masked_of(c))
                    seen = Observation(tables, weights, srv.p.ring)
                sink.accept(p, c, {}, seen)      # a masked reply carries no metrics: they are in the sum
            del contents
            srv.check_survivors(floor)
            privacy.charge((len(srv.u2), floor))   # the ledger first: the unmask exchange releases the sum
            nxt = _next_round(cfg, book, plan.upcoming[0] if plan.upcoming else None, rnd, layout, privacy, drops,
                              tally) if s.share_ahead else None
            keys_for = _keys_ahead(book, plan.upcoming, rnd) if s.share_ahead else {}
            self.ahead, self.refused = nxt, _unmask(ex, srv, nxt, book,
                                                    {p: _keys_query(cfg, r) for p, r in keys_for.items()})
            t_unmask = time.perf_counter()
            total, dither_sum = srv.finish(dither, floor)
            ex.seconds["server_unmask"] = time.perf_counter() - t_unmask
            survivors = set(srv.u2)
        except SecAggAbort as exc:
            log.warning("round %d: secure aggregation aborted, global state unchanged: %s", rnd, exc)
            sink.summed(None, 0.0)
            return Collected(None, None, 0, {**_stats(ex, srv, survivors), "clients_ok": 0}, aborted=str(exc))
        sums, weights, extra = srv.quantizer.decode_all(total, dither_sum)
        if adaptive:
            privacy.observe({CLIP_BIT: float(extra[0])})     # the noisy sum of the survivors' clip bits
        totals = tally.decode(extra[layout.extra - tally.size:])   # the metrics, learnt as sums only
        sink.summed(totals.get(LOSS_SUM), totals.get(EXAMPLES, 0.0))
        stats = _stats(ex, srv, survivors)
        if CLIPPED in totals:
            stats["secagg"]["clipped"] = int(totals[CLIPPED])
        return Collected(sums, weights, len(survivors), {**stats, "clients_ok": len(survivors)},
                         noise_in_sums=(len(survivors), floor))


def _next_round(cfg, book: KeyBook, upcoming: list[int] | None, rnd: int, layout: Layout, privacy,
                drops: dict[str, float], tally: Tally) -> ServerRound | None:
    """Round rnd + 1, set up now so that this round's unmask exchange can ask for its shares;
    None when it cannot be yet (a client without a channel key, too few clients): that round
    then shares on its own."""
    if not upcoming or len(upcoming) < cfg.secagg.min_clients or any(p not in book.channel for p in upcoming):
        return None
    try:
        return ServerRound(upcoming, book, _params(cfg, len(upcoming), privacy), rnd + 1, layout, cfg.seed, drops,
                           tally)
    except FedembedError:        # the round itself will say why, when it comes
        return None


def _params(cfg, n: int, privacy) -> RoundParams:
    """A round's protocol parameters for n clients; under user-level DP its ranges follow the clip."""
    return for_round(cfg, n, privacy.user.clip if privacy.user is not None else None)


def _keys_query(cfg, rnd: int) -> RecordDict:
    """Ask a client for its channel key, for round `rnd` (a seeded test dropout is drawn for it)."""
    return msg.record(round=rnd, seed=cfg.seed, drop=cfg.secagg.drop_keys)


def _keys_ahead(book: KeyBook, upcoming: list[list[int]], rnd: int) -> dict[int, int]:
    """Clients of the coming rounds without a channel key → the first of those rounds they are in."""
    need: dict[int, int] = {}
    for i, cohort in enumerate(upcoming):
        for p in cohort:
            if p not in book.channel:
                need.setdefault(p, rnd + 1 + i)
    return need


def _unmask(ex: _Exchange, srv: ServerRound, nxt: ServerRound | None, book: KeyBook,
            keys: dict[int, RecordDict]) -> dict[int, str]:
    """This round's unmask exchange, carrying `nxt`'s share requests (a survivor's in its unmask
    message, any other client of `nxt` in a share message of its own) and `keys` queries for
    clients of the coming rounds (they learn into `book`; one that fails is asked again in its
    round). Returns the clients of `nxt` whose share answer failed (they sit `nxt` out); a
    client whose whole message failed is in neither `nxt.u1` nor that list, and `nxt` asks it
    again."""
    t0 = time.perf_counter()
    contents = {p: (msg.UNMASK, f"{srv.rnd}.unmask", srv.unmask_content(p)) for p in sorted(srv.u2)}
    for p in nxt.pids if nxt is not None else []:
        if p in contents:
            contents[p][2][msg.NEXT] = msg.get(nxt.share_content(p))
        else:
            contents[p] = (msg.SHARE, f"{nxt.rnd}.share", nxt.share_content(p))
    for p, content in keys.items():   # no channel key: neither a survivor nor a client of `nxt`
        contents[p] = (msg.KEYS, f"{int(msg.get(content)['round'])}.keys", content)
    answers, failed = ex.send(contents)
    ex.seconds["unmask"] = time.perf_counter() - t0
    refused: dict[int, str] = {}
    for p, why in failed.items():
        if p in srv.u2:
            ex.failures["unmask"][p] = why
        elif p in keys:
            log.info("round %d: partition %d did not advertise its key ahead (asked again in its round): %s",
                     srv.rnd, p, why)
        else:
            refused[p] = why
    for p, c in answers.items():
        if p in keys:
            _fold(p, book.learn, c)
            continue
        if p in srv.u2:
            ex.accept("unmask", p, srv.on_unmask, c)
            if nxt is None or p not in nxt.pids:
                continue
            part = c.config_records.get(msg.NEXT)
            if part is None:            # a client that does not share ahead: asked again next round
                continue
            if msg.NEXT_ERROR in part:
                refused[p] = str(part[msg.NEXT_ERROR])
                continue
            c = RecordDict({msg.SECAGG: part})
        assert nxt is not None          # only `nxt`'s clients outside this round's survivors get here
        why = _fold(p, nxt.on_share, c)
        if why is not None:
            refused[p] = why
    return refused


def _stats(ex: _Exchange, srv: ServerRound | None, survivors: set[int]) -> dict[str, Any]:
    failed = {st: len(f) for st, f in ex.failures.items()}
    for st, fs in ex.failures.items():
        for p, why in fs.items():
            log.info("secure aggregation, stage %s: partition %d: %s", st, p, why)
    late = sum(why == "no answer in time" for fs in ex.failures.values() for why in fs.values())
    out: dict[str, Any] = {"failed": sum(failed.values()), "dropped": sum(failed.values()) - late,
                           "timed_out": late, "rejected": 0, "bytes_up": ex.bytes_up,
                           "bytes_down": ex.bytes_down,
                           "secagg": {"dropped": failed, "survivors": len(survivors),
                                      "seconds": {k: round(v, 4) for k, v in ex.seconds.items()}}}
    if srv is not None:
        p = srv.p
        out["secagg"].update(ring_bits=p.ring, bits=p.bits, neighbours=p.degree, threshold=p.threshold,
                             shared=len(srv.u1), masked=len(srv.u2))
    return out
