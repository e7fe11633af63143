"""The history checker of the faults suite (Jepsen queue-checker style).

Input: the History of every HTTP attempt (load.py), the fault windows, and
what the database, a replay and the live subscriber hold once the pipeline
has settled.  Output: a Report -- violations, each charged to a bucket (a
fault's window, "calm" or "final"), and per-bucket counts for the table.

Contracts checked (any breach is a violation, the run fails):
  ack      every key answered 202 is in event_inbox exactly once, with the
           event_id of its 202s (all of them carry the same one); a 202 with
           "accepted":false only after an earlier attempt of the key that got
           no definite answer (the stored original came from somewhere).
  sent     nothing is stored that was not sent: every row of the workspace
           has a dedupe_key that is one of our keys, and its payload names
           that key.
  route    every stored event is processed with exactly its outbox rows (one
           of kind = its role, one agent_run.queued for the one agent), one
           agent_run and one chat (the agent_run's), all in the workspace.
  publish  every outbox row has published_at set.
  replay   outbox-relay --replay-from 1 prints every outbox row of the
           workspace exactly once, byte for byte its outbox_envelope().
  live     everything the live subscriber printed is the envelope of an
           outbox row (misses and duplicates are counted, not failed: pub/sub
           is best effort across router and relay restarts).
Not violations: keys never answered 202 (the run ended while they were being
retried) may be stored or not; they are counted.

Charging: a key's violations go to the bucket its first 202 arrived in, or,
for a key never answered, the bucket of its first attempt.  Table columns
of a bucket: acked = keys whose (first) 202 arrived in it; dedup = of those,
answered "accepted":false (an earlier unanswered attempt had stored it);
lost/dup = acked keys missing or stored under another id / stored twice;
indet = attempts with no definite answer (503, refused, reset, timeout);
ack ms = worst time from the first attempt of a key to its 202, retries
included; pub ms = worst time from an event's received_at to the last
published_at of its outbox rows.  indet, ack ms and pub ms are charged to
the window the attempt or key was sent in, or else to the first window that
began while it was still pending (a request in flight when a stage is
killed belongs to that fault), else to calm.
"""

import bisect
import collections
import hashlib
import json
import os
import subprocess

from harness import bin_path, scaled
from load import indeterminate

CALM = "calm (baseline, between faults)"
FINAL = "final check"

InboxRow = collections.namedtuple(
    "InboxRow", "id dedupe_key payload_key status n_role n_run n_other n_unpub "
                "n_agent_runs n_chats lag_ms")


class Window:
    """[t0, t1) of one fault (monotonic seconds) and what went wrong with
    the fault itself (problems: the stage did not exit as it should, did not
    come back, ...)."""

    def __init__(self, name, t0):
        self.name, self.t0, self.t1 = name, t0, None
        self.problems = []


class Bucket:
    def __init__(self, name, seconds=0.0):
        self.name, self.seconds = name, seconds
        self.acked = self.dedup = self.lost = self.dup = self.indet = 0
        self.ack_ms = None
        self.pub_ms = None
        self.violations = []

    def worst(self, attr, ms):
        cur = getattr(self, attr)
        if ms is not None and (cur is None or ms > cur):
            setattr(self, attr, ms)

    @property
    def ok(self):
        return not self.violations


class Report:
    def __init__(self, windows, t_load0, t_load1):
        self.windows = sorted(windows, key=lambda w: w.t0)
        self._starts = [w.t0 for w in self.windows]
        self.buckets = collections.OrderedDict()
        calm = sum(w.t1 - w.t0 for w in self.windows)
        self.buckets[CALM] = Bucket(CALM, (t_load1 - t_load0) - calm)
        for w in self.windows:
            b = Bucket(w.name, w.t1 - w.t0)
            b.violations += w.problems
            self.buckets[w.name] = b
        self.buckets[FINAL] = Bucket(FINAL)
        self.summary = []

    def bucket_of(self, t):
        i = bisect.bisect_right(self._starts, t) - 1
        if i >= 0 and t < self.windows[i].t1:
            return self.buckets[self.windows[i].name]
        return self.buckets[CALM]

    def charge(self, t_send, t_end):
        """The bucket of something sent at t_send and pending until t_end:
        the window it was sent in, else the first window that began while
        it was pending (a request in flight when a stage is killed belongs
        to that fault), else calm."""
        b = self.bucket_of(t_send)
        if b.name != CALM:
            return b
        i = bisect.bisect_right(self._starts, t_send)
        if i < len(self.windows) and self.windows[i].t0 <= t_end:
            return self.buckets[self.windows[i].name]
        return b

    def violate(self, bucket, text):
        bucket.violations.append(text)

    def all_violations(self):
        return [(b.name, v) for b in self.buckets.values() for v in b.violations]


# ---------------------------------------------------------------------------
# what the history says

class KeyHistory:
    def __init__(self, key):
        self.key = key
        self.attempts = []

    @property
    def first_send(self):
        return self.attempts[0].t_send

    def acks(self):
        return [a for a in self.attempts if a.status == 202 and a.event_id]


def key_histories(attempts):
    keys = collections.OrderedDict()
    for a in sorted(attempts, key=lambda a: a.t_send):
        keys.setdefault(a.key, KeyHistory(a.key)).attempts.append(a)
    return keys


# ---------------------------------------------------------------------------
# what the database holds

def inbox_rows(db, ws):
    """Every event_inbox row of ws with its routing results."""
    rows = db.query("""
        select e.id, e.dedupe_key, e.payload->>'key', e.status,
               coalesce(o.n_role, 0), coalesce(o.n_run, 0), coalesce(o.n_other, 0),
               coalesce(o.n_unpub, 0), coalesce(r.n, 0), coalesce(c.n, 0),
               round(extract(epoch from o.last_pub - e.received_at) * 1000)
        from infonchat.event_inbox e
        left join lateral (
            select count(*) filter (where kind = e.role) n_role,
                   count(*) filter (where kind = 'agent_run.queued') n_run,
                   count(*) filter (where kind not in (e.role, 'agent_run.queued')) n_other,
                   count(*) filter (where published_at is null) n_unpub,
                   max(published_at) last_pub
            from infonchat.event_outbox where event_id = e.id) o on true
        left join (select event_id, count(*) n from infonchat.agent_runs group by 1) r
               on r.event_id = e.id
        left join (select event_id, count(*) n from infonchat.chats group by 1) c
               on c.event_id = e.id
        where e.workspace_id = %s""", ws, timeout=300)
    return [InboxRow(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6]), int(r[7]),
                     int(r[8]), int(r[9]), None if r[10] is None else int(float(r[10])))
            for r in rows]


def outbox_digests(db, ws):
    """{outbox id: md5 of its outbox_envelope()} for ws."""
    return {r[0]: r[1] for r in db.query(
        "select id, md5(infonchat.outbox_envelope(o)) from infonchat.event_outbox o"
        " where workspace_id = %s", ws, timeout=300)}


def cross_checks(db, ws, agent):
    """Whole-table contracts a per-event count cannot see; [(text, count)]
    of those broken."""
    checks = [
        ("inbox rows of another workspace",
         "select count(*) from infonchat.event_inbox where workspace_id <> %s", (ws,)),
        ("outbox rows of another workspace",
         "select count(*) from infonchat.event_outbox where workspace_id <> %s", (ws,)),
        ("outbox rows whose topic is not <workspace_id>/<kind>",
         "select count(*) from infonchat.event_outbox where topic <> workspace_id || '/' || kind",
         ()),
        ("agent_runs not (queued, of the agent, with a chat of the same event and agent)",
         "select count(*) from infonchat.agent_runs r left join infonchat.chats c on c.id = r.chat_id"
         " where r.workspace_id <> %s or r.agent_id <> %s or r.status <> 'queued'"
         " or c.id is null or c.event_id is distinct from r.event_id or c.agent_id <> r.agent_id",
         (ws, agent)),
        ("chats without exactly one agent_run",
         "select count(*) from infonchat.chats c where (select count(*) from infonchat.agent_runs r"
         " where r.chat_id = c.id) <> 1", ()),
        ("agent_run.queued rows not naming their agent_run (agent_run_id, chat_id, event_id)",
         "select count(*) from infonchat.event_outbox o left join infonchat.agent_runs r"
         " on r.id::text = o.data->>'agent_run_id' where o.kind = 'agent_run.queued' and"
         " (r.id is null or r.event_id <> o.event_id or r.chat_id::text <> o.data->>'chat_id'"
         " or o.data->>'event_id' <> o.event_id::text)", ()),
    ]
    bad = []
    for text, sql, args in checks:
        n = int(db.value(sql, *args, timeout=300))
        if n:
            bad.append((text, n))
    return bad


def replay(db, ws, out_path):
    """outbox-relay --replay-from 1 --topic ws/ to out_path; its lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFONCHAT_")}
    with open(out_path, "wb") as out:
        p = subprocess.run([bin_path("outbox-relay"), "--replay-from", "1", "--topic", ws + "/",
                            "--db", db.conninfo], stdout=out, stderr=subprocess.PIPE,
                           env=env, timeout=scaled(300))
    if p.returncode != 0:
        raise RuntimeError("replay exited %d: %s" % (p.returncode, p.stderr.decode()[-2000:]))
    with open(out_path, "rb") as f:
        return f.read().split(b"\n")[:-1]


def envelope_id(line):
    """The "id" of an envelope line, or None if it is not one."""
    try:
        doc = json.loads(line)
        return doc["id"] if isinstance(doc, dict) and isinstance(doc.get("id"), str) else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# the checks

SHOW = 8      # violations of one kind quoted per bucket; the rest counted


def check_keys(rep, keys, by_key):
    """Contract "ack" (and the latency and count columns)."""
    for k in keys.values():
        acks = k.acks()
        sent_in = rep.bucket_of(k.first_send)
        for a in k.attempts:
            if indeterminate(a):
                rep.charge(a.t_send, a.t_answer).indet += 1
            elif a.error:
                rep.violate(rep.bucket_of(a.t_answer), "key %s: %s" % (k.key, a.error))
        stored = by_key.get(k.key, [])
        if not acks:
            if len(stored) > 1:
                sent_in.dup += 1
                rep.violate(sent_in, "key %s (never acked) stored %d times" % (k.key, len(stored)))
            continue
        first = acks[0]
        b = rep.bucket_of(first.t_answer)
        b.acked += 1
        rep.charge(k.first_send, first.t_answer).worst(
            "ack_ms", round((first.t_answer - k.first_send) * 1000))
        if first.accepted is False:
            b.dedup += 1
            earlier = [a for a in k.attempts if a.t_send < first.t_send]
            if not any(indeterminate(a) for a in earlier):
                rep.violate(b, "key %s: first answer is accepted:false (%s) but no earlier "
                            "attempt can have stored it" % (k.key, first.event_id))
        ids = {a.event_id for a in acks}
        if len(ids) > 1:
            rep.violate(b, "key %s: 202s with different event_ids %s" % (k.key, sorted(ids)))
        if sum(1 for a in acks if a.accepted) > 1:
            rep.violate(b, "key %s: answered accepted:true %d times"
                        % (k.key, sum(1 for a in acks if a.accepted)))
        if not stored:
            b.lost += 1
            rep.violate(b, "LOST key %s: answered 202 %s at t=%.3f, not in event_inbox"
                        % (k.key, first.event_id, first.t_answer))
        elif len(stored) > 1:
            b.dup += 1
            rep.violate(b, "DUPLICATE key %s: stored %d times (%s)"
                        % (k.key, len(stored), [r.id for r in stored]))
        elif stored[0].id != first.event_id:
            b.lost += 1
            rep.violate(b, "LOST key %s: answered 202 %s but stored as %s"
                        % (k.key, first.event_id, stored[0].id))


def check_rows(rep, rows, keys):
    """Contracts "sent", "route" and "publish", per stored event."""
    final = rep.buckets[FINAL]
    for r in rows:
        k = keys.get(r.dedupe_key)
        if k is None:
            rep.violate(final, "row %s stored but never sent (dedupe_key %r)" % (r.id, r.dedupe_key))
            continue
        acks = k.acks()
        b = rep.bucket_of(acks[0].t_answer if acks else k.first_send)
        if r.lag_ms is not None:
            # received_at ~ the first send: pending until first_send + lag
            rep.charge(k.first_send, k.first_send + r.lag_ms / 1000.0).worst("pub_ms", r.lag_ms)
        if r.payload_key != r.dedupe_key:
            rep.violate(b, "row %s: payload key %r, dedupe_key %r" % (r.id, r.payload_key, r.dedupe_key))
        shape = (r.status, r.n_role, r.n_run, r.n_other, r.n_agent_runs, r.n_chats)
        if shape != ("processed", 1, 1, 0, 1, 1):
            rep.violate(b, "event %s (key %s): status %s, outbox rows role/run/other %d/%d/%d, "
                        "agent_runs %d, chats %d; want processed 1/1/0, 1, 1"
                        % ((r.id, r.dedupe_key) + shape))
        if r.n_unpub:
            rep.violate(b, "event %s (key %s): %d outbox rows unpublished"
                        % (r.id, r.dedupe_key, r.n_unpub))


def check_replay(rep, lines, digests):
    """Contract "replay": every outbox row exactly once, exactly its envelope."""
    final = rep.buckets[FINAL]
    seen = collections.Counter()
    for ln in lines:
        i = envelope_id(ln)
        if i not in digests:
            rep.violate(final, "replay printed a line that is no outbox row: %r" % ln[:200])
        elif hashlib.md5(ln).hexdigest() != digests[i]:
            rep.violate(final, "replay printed row %s, not as outbox_envelope() has it" % i)
        seen[i] += 1
    missing = [i for i in digests if i not in seen]
    twice = [i for i, n in seen.items() if n > 1]
    if missing:
        rep.violate(final, "replay lacks %d outbox rows, e.g. %s" % (len(missing), missing[:5]))
    if twice:
        rep.violate(final, "replay printed %d rows more than once, e.g. %s" % (len(twice), twice[:5]))
    return len(lines)


def check_live(rep, lines, digests):
    """Contract "live": only outbox envelopes; misses and duplicates counted."""
    final = rep.buckets[FINAL]
    seen = collections.Counter()
    for ln in lines:
        i = envelope_id(ln)
        if i not in digests or hashlib.md5(ln).hexdigest() != digests[i]:
            rep.violate(final, "the live subscriber got a message that is no outbox row: %r"
                        % ln[:200])
            continue
        seen[i] += 1
    dups = sum(n - 1 for n in seen.values())
    return len(seen), len(digests) - len(seen), dups


def percentiles(attempts):
    lat = sorted(round((a.t_answer - a.t_send) * 1000) for a in attempts)
    if not lat:
        return ("-", "-", "-")
    return (lat[len(lat) // 2], lat[min(len(lat) - 1, len(lat) * 99 // 100)], lat[-1])


def run_checks(rep, db, ws, agent, attempts, replay_lines, live_lines):
    """All contracts; fills rep (violations, columns, summary lines)."""
    keys = key_histories(attempts)
    rows = inbox_rows(db, ws)
    by_key = collections.defaultdict(list)
    for r in rows:
        by_key[r.dedupe_key].append(r)
    digests = outbox_digests(db, ws)

    check_keys(rep, keys, by_key)
    check_rows(rep, rows, keys)
    for text, n in cross_checks(db, ws, agent):
        rep.violate(rep.buckets[FINAL], "%s: %d" % (text, n))
    if len(digests) != 2 * len(rows):
        rep.violate(rep.buckets[FINAL], "%d outbox rows for %d events, want 2 per event"
                    % (len(digests), len(rows)))
    n_replay = check_replay(rep, replay_lines, digests)
    live_got, live_missed, live_dups = check_live(rep, live_lines, digests)

    acked = sum(1 for k in keys.values() if k.acks())
    never = [k for k in keys.values() if not k.acks()]
    never_stored = sum(1 for k in never if k.key in by_key)
    dedup = sum(b.dedup for b in rep.buckets.values())
    indet = sum(1 for a in attempts if indeterminate(a))
    no_answer = sum(1 for a in attempts if a.status is None)
    rep.summary = [
        "keys sent %d, answered 202 %d (%d of them accepted:false: an unanswered attempt had "
        "stored them), never answered %d (%d stored, %d not)"
        % (len(keys), acked, dedup, len(never), never_stored, len(never) - never_stored),
        "attempts %d: indeterminate %d (503 %d, no answer %d); latency of an attempt "
        "p50 %s ms, p99 %s ms, max %s ms"
        % ((len(attempts), indet, indet - no_answer, no_answer) + percentiles(attempts)),
        "event_inbox rows %d, event_outbox rows %d (%d unpublished)"
        % (len(rows), len(digests), sum(r.n_unpub for r in rows)),
        "replay: %d lines for %d outbox rows" % (n_replay, len(digests)),
        "live subscriber: %d distinct outbox rows of %d (missed %d), %d duplicates"
        % (live_got, len(digests), live_missed, live_dups),
    ]


# ---------------------------------------------------------------------------
# the table

COLUMNS = ("fault", "secs", "acked", "dedup", "lost", "dup", "indet", "ack ms", "pub ms", "result")


def _ms(v):
    return "-" if v is None else str(v)


def table(rep):
    """The report table as a list of lines."""
    rows = []
    tot = Bucket("total")
    for b in rep.buckets.values():
        if b.name == FINAL:
            continue
        rows.append((b.name, "%.1f" % b.seconds, b.acked, b.dedup, b.lost, b.dup, b.indet,
                     _ms(b.ack_ms), _ms(b.pub_ms), "ok" if b.ok else "FAIL"))
        tot.seconds += b.seconds
        for attr in ("acked", "dedup", "lost", "dup", "indet"):
            setattr(tot, attr, getattr(tot, attr) + getattr(b, attr))
        tot.worst("ack_ms", b.ack_ms)
        tot.worst("pub_ms", b.pub_ms)
    fin = rep.buckets[FINAL]
    rows.append((FINAL, "", "", "", "", "", "", "", "", "ok" if fin.ok else "FAIL"))
    ok = not rep.all_violations()
    rows.append(("total", "%.1f" % tot.seconds, tot.acked, tot.dedup, tot.lost, tot.dup, tot.indet,
                 _ms(tot.ack_ms), _ms(tot.pub_ms), "ok" if ok else "FAIL"))
    widths = [max(len(str(r[i])) for r in rows + [COLUMNS]) for i in range(len(COLUMNS))]

    def fmt(r):
        return "  ".join(str(v).ljust(widths[0]) if i == 0 else str(v).rjust(widths[i])
                         for i, v in enumerate(r)).rstrip()
    rule = "-" * len(fmt(COLUMNS))
    return [fmt(COLUMNS), rule] + [fmt(r) for r in rows[:-1]] + [rule, fmt(rows[-1])]
