"""Shared helpers for the inbox-worker integration tests.

Not a test module itself (run.py only collects test_*.py).

    ws = make_workspace(db)
    a = add_agent(db, ws, "webhook.stripe.*")           # agent id
    ids = insert_events(db, ws, 100, role="webhook.stripe.payment_succeeded")
    w = start_worker(db)                                  # own run dir
    wait_drained(db, ws)
"""

import json
import os
import re
import uuid

from harness import Stage, tmpdir, wait_until

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def add_agent(db, ws, *roles, name="agent"):
    """A new agent of workspace ws with these agent_roles; returns its id."""
    aid = str(uuid.uuid4())
    db.execute("insert into infonchat.agents(id, workspace_id, name) values (%s, %s, %s)", aid, ws, name)
    for r in roles:
        db.execute("insert into infonchat.agent_roles(workspace_id, agent_id, role) values (%s, %s, %s)",
                   ws, aid, r)
    return aid


def insert_event(db, ws, role="webhook.stripe.payment_succeeded", payload='{"a":1}',
                 source_kind=None, event_type="payment.succeeded", dedupe_key=None,
                 headers='{"content-type":"application/json"}'):
    """One pending event_inbox row inserted with plain SQL naming only
    contract columns; returns its id."""
    if source_kind is None:
        source_kind = ".".join(role.split(".")[:2])
    return db.value(
        "insert into infonchat.event_inbox(workspace_id, source_kind, event_type, role,"
        " source_identifier, dedupe_key, headers, payload)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s) returning id",
        ws, source_kind, event_type, role, dedupe_key or "si-" + uuid.uuid4().hex,
        dedupe_key, headers, payload)


def insert_events(db, ws, n, role="webhook.stripe.payment_succeeded", payload_size=200):
    """n pending events in one statement (ids time-ordered as ingest-httpd
    makes them); returns nothing."""
    db.execute(
        "insert into infonchat.event_inbox(id, workspace_id, source_kind, event_type, role,"
        " source_identifier, dedupe_key, headers, payload)"
        " select infonchat.uuid_v7(), %s, 'webhook.stripe', 'payment.succeeded', %s,"
        "  'evt_' || g, 'evt_' || g || '_' || %s, '{\"x-webhook-id\":\"x\"}',"
        "  ('{\"id\":\"evt_' || g || '\",\"pad\":\"' || repeat('x', %s) || '\"}')::json"
        " from generate_series(1, %s) g",
        ws, role, uuid.uuid4().hex, payload_size, n, timeout=120)


def counts(db, ws):
    """{status: count} of workspace ws's inbox rows."""
    return {r[0]: int(r[1]) for r in db.query(
        "select status, count(*) from infonchat.event_inbox where workspace_id = %s group by 1", ws)}


def pending(db, ws):
    return counts(db, ws).get("pending", 0)


def wait_drained(db, ws, timeout=30):
    wait_until(lambda: pending(db, ws) == 0, timeout=timeout, interval=0.1,
               message="events of %s still pending" % ws)


def start_worker(db, extra=(), run_dir=None, **kw):
    """inbox-worker on its own run dir (or run_dir), ready."""
    rd = run_dir or tmpdir("run")
    st = Stage("inbox-worker", ["--db", db.conninfo, "--run-dir", rd] + list(extra), **kw)
    st.run_dir = rd
    return st


def routed_ids(stage):
    """The ids of the "event routed" lines in a worker's log, in order."""
    return re.findall(r'msg="event routed" id=([0-9a-f-]{36})', stage.stderr_text())


def per_event_outbox(db, ws):
    """{event_id: (role rows, agent_run.queued rows)} for workspace ws."""
    out = {}
    for eid, role_rows, run_rows in db.query(
            "select e.id, count(o.*) filter (where o.kind = e.role),"
            " count(o.*) filter (where o.kind = 'agent_run.queued')"
            " from infonchat.event_inbox e left join infonchat.event_outbox o on o.event_id = e.id"
            " where e.workspace_id = %s group by e.id", ws):
        out[eid] = (int(role_rows), int(run_rows))
    return out


def check_exactly_once(tc, db, ws, runs_per_event):
    """Every event of ws is processed with exactly one role row, one run per
    matching agent, one agent_run.queued row per run, a chat per run; and
    nothing else."""
    c = counts(db, ws)
    tc.assertEqual(list(c), ["processed"], c)
    bad = {e: v for e, v in per_event_outbox(db, ws).items() if v != (1, runs_per_event)}
    tc.assertEqual(bad, {}, "events without exactly their outbox rows")
    n = sum(counts(db, ws).values())
    tc.assertEqual(int(db.value("select count(*) from infonchat.agent_runs where workspace_id = %s", ws)),
                   n * runs_per_event)
    tc.assertEqual(int(db.value("select count(*) from infonchat.chats where workspace_id = %s", ws)),
                   n * runs_per_event)
    tc.assertEqual(db.value(
        "select count(*) from infonchat.agent_runs r join infonchat.chats c on c.id = r.chat_id"
        " where r.workspace_id = %s and c.event_id = r.event_id and c.agent_id = r.agent_id", ws),
        str(n * runs_per_event))


def outbox_rows(db, event_id):
    """The event's outbox rows as dicts, in seq order (data parsed)."""
    rows = db.query("select seq, id, kind, topic, workspace_id, data::text, infonchat.outbox_envelope(o)"
                    " from infonchat.event_outbox o where event_id = %s order by seq", event_id)
    return [{"seq": int(r[0]), "id": r[1], "kind": r[2], "topic": r[3], "workspace_id": r[4],
             "data_text": r[5], "data": json.loads(r[5]), "envelope": r[6]} for r in rows]


def envelope_line(db, event_id):
    """An inbox envelope line naming a stored event (for --in -)."""
    ws, sk, et, role = db.query("select workspace_id, source_kind, event_type, role"
                                " from infonchat.event_inbox where id = %s", event_id)[0]
    return json.dumps({"v": 1, "id": event_id, "workspace_id": ws, "source_kind": sk,
                       "event_type": et, "role": role, "source_identifier": "x",
                       "received_at": "2026-01-01T00:00:00Z", "payload": {}})


def read_lines(path):
    with open(path, "rb") as f:
        return [ln for ln in f.read().decode("utf-8").split("\n") if ln]


def run_worker(db, args, input=None, timeout=60.0):
    """Run inbox-worker to completion (no readiness fd) with --db; return
    CompletedProcess with bytes stdout/stderr."""
    import shlex
    import subprocess
    from harness import bin_path, scaled
    env = dict(os.environ)
    env.pop("INFONCHAT_RUN_DIR", None)
    env.pop("INFONCHAT_DB", None)
    argv = shlex.split(os.environ.get("INFONCHAT_WRAP", "")) + [bin_path("inbox-worker")]
    if db is not None:
        argv += ["--db", db.conninfo]
    return subprocess.run(argv + list(args), input=input, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=scaled(timeout))
