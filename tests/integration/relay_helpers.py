"""Shared helpers for the outbox-relay and router tests.

Not a test module itself (run.py only collects test_*.py).

Python has no ZeroMQ binding here, so a subscriber is a `router --tail`
process whose stdout goes to a file:

    router = start_router(run_dir)
    tail = Tail(run_dir, topics=[ws + "/"])      # ready = connected + subscribed
    relay = start_relay(db, run_dir)
    ids = insert_outbox(db, ws, event, 10)       # outbox rows, as inbox-worker would
    tail.wait_ids(ids)
    assert tail.lines() == envelopes(db, ids)    # exactly outbox_envelope()
"""

import collections
import json
import os
import uuid

from harness import Stage, make_workspace, scaled, wait_until


def start_router(run_dir, extra=(), **kw):
    return Stage("router", ["--run-dir", run_dir, "--stats-interval", "1"] + list(extra), **kw)


def start_relay(db, run_dir, extra=(), **kw):
    return Stage("outbox-relay", ["--db", db.conninfo, "--run-dir", run_dir] + list(extra), **kw)


class Tail:
    """A `router --tail` subscriber; its stdout is a file read by lines()."""

    def __init__(self, run_dir=None, topics=(), kinds=(), extra=(), endpoint=None, **kw):
        args = ["--tail"]
        args += ["--in", endpoint] if endpoint else ["--run-dir", run_dir]
        for t in topics:
            args += ["--topic", t]
        for k in kinds:
            args += ["--kind", k]
        self.stage = Stage("router", args + list(extra), **kw)

    def text(self):
        with open(self.stage.stdout_path, "rb") as f:
            return f.read().decode("utf-8")

    def lines(self):
        """Complete lines printed so far."""
        return self.text().split("\n")[:-1]

    def ids(self):
        return [json.loads(ln)["id"] for ln in self.lines()]

    def counts(self):
        return collections.Counter(self.ids())

    def wait_ids(self, ids, timeout=15.0):
        """Until every id in ids has been printed at least once."""
        want = set(ids)
        try:
            wait_until(lambda: want <= set(self.ids()), timeout=timeout)
        except AssertionError:
            raise AssertionError("tail got %d of %d ids within %.1fs\n%s" % (
                len(want & set(self.ids())), len(want), scaled(timeout),
                self.stage.stderr_text())) from None

    def stop(self, **kw):
        return self.stage.stop(**kw)


def make_event(db, ws):
    """An event_inbox row (the outbox's foreign key); returns its id."""
    return db.value(
        "insert into infonchat.event_inbox(workspace_id, source_kind, event_type, role,"
        " source_identifier, payload) values (%s, 'webhook.test', 'x', 'webhook.test.x', 's', '{}')"
        " returning id", ws)


def new_source(db):
    """A fresh workspace with one event: (workspace_id, event_id)."""
    ws = make_workspace(db)
    return ws, make_event(db, ws)


def insert_outbox(db, ws, event_id, n, kind="webhook.test.x", data_sql=None):
    """n outbox rows in one transaction, as inbox-worker inserts them; data
    is data_sql (an SQL expression of g, 1..n) or a small object. Returns
    the ids in seq order."""
    data_sql = data_sql or "json_build_object('n', g)"
    rows = db.query(
        "insert into infonchat.event_outbox(event_id, workspace_id, kind, topic, data)"
        " select %s, %s, %s, %s, " + data_sql.replace("%", "%%") +
        " from generate_series(1, %s) g returning id, seq",
        event_id, ws, kind, ws + "/" + kind, n)
    return [r[0] for r in sorted(rows, key=lambda r: int(r[1]))]


def envelopes(db, ids):
    """infonchat.outbox_envelope() of the rows, in seq order."""
    rows = db.query("select infonchat.outbox_envelope(o) from infonchat.event_outbox o"
                    " where id = any(%s::uuid[]) order by seq", "{" + ",".join(ids) + "}")
    return [r[0] for r in rows]


def unpublished(db, ids):
    return int(db.value("select count(*) from infonchat.event_outbox"
                        " where id = any(%s::uuid[]) and published_at is null",
                        "{" + ",".join(ids) + "}"))


def wait_published(db, ids, timeout=15.0):
    wait_until(lambda: unpublished(db, ids) == 0, timeout=timeout,
               message="rows not all published")


def settle_outbox(db):
    """Mark every row published, so that rows a previous test left behind
    are not published to the next one's subscribers."""
    db.execute("update infonchat.event_outbox set published_at = now() where published_at is null")


def slow_marks(db, seconds):
    """Make every UPDATE statement on event_outbox (the relay's mark) sleep
    first, widening the window between send and mark. Undo with fast_marks()."""
    db.execute("""
        create or replace function public.test_slow_mark() returns trigger
        language plpgsql as $$ begin perform pg_sleep(%s); return null; end $$;
        drop trigger if exists test_slow_mark on infonchat.event_outbox;
        create trigger test_slow_mark before update on infonchat.event_outbox
            for each statement execute function public.test_slow_mark();
    """, float(seconds))


def fast_marks(db):
    db.execute("drop trigger if exists test_slow_mark on infonchat.event_outbox")


def log_values(stage, msg, key):
    """The integer values of key= in the stage's log lines with msg=msg."""
    out = []
    for ln in stage.stderr_text().splitlines():
        if ("msg=%s " % msg) in ln or ('msg="%s" ' % msg) in ln:
            for part in ln.split():
                if part.startswith(key + "="):
                    out.append(int(part[len(key) + 1:]))
    return out


def fresh_id():
    return str(uuid.uuid4())


def run_dir_socket(run_dir, name):
    return "ipc://" + os.path.join(run_dir, name + ".sock")
