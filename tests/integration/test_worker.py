"""inbox-worker against a real PostgreSQL: the routing matrix, the outbox
rows and envelopes it writes, hints from inbox-writer, a backlog built while
it is down, SIGKILL mid-batch, two workers at once, a poison event, replay,
the debug pipe, a database restart and signals."""

import json
import os
import signal
import subprocess
import threading
import time
import unittest
import uuid

from harness import (Cluster, QueryError, Stage, ZmtpPull, bin_path, make_workspace, scaled,
                     scan_counts, tmpdir, wait_until)
from worker_helpers import (UUID_RE, add_agent, check_exactly_once, counts, envelope_line,
                            insert_event, insert_events, outbox_rows, pending, per_event_outbox,
                            read_lines, routed_ids, run_worker, start_worker, wait_drained)

db = None


def setUpModule():
    global db
    db = Cluster()


def tearDownModule():
    if db:
        db.stop()


def runs_of(event_id):
    return {r[0] for r in db.query("select agent_id from infonchat.agent_runs where event_id = %s",
                                   event_id)}


class Routing(unittest.TestCase):
    def test_matrix(self):
        """Exact, prefix, catch-all, no match; several agents on one role;
        an agent matching twice runs once; another workspace's agents never."""
        ws, other, lonely = make_workspace(db), make_workspace(db), make_workspace(db)
        exact = add_agent(db, ws, "webhook.stripe.payment_succeeded")
        exact2 = add_agent(db, ws, "webhook.stripe.payment_succeeded")
        stripe = add_agent(db, ws, "webhook.stripe.*")
        catch_all = add_agent(db, ws, "webhook.*")
        twice = add_agent(db, ws, "webhook.stripe.*", "webhook.stripe.payment_succeeded")
        github = add_agent(db, ws, "webhook.github.push")
        partial = add_agent(db, ws, "webhook.zendesk.ticket_*")
        add_agent(db, other, "webhook.*", "webhook.stripe.payment_succeeded", "*")
        add_agent(db, lonely, "webhook.nothing.*")
        ev = {
            "pay": insert_event(db, ws, "webhook.stripe.payment_succeeded"),
            "refund": insert_event(db, ws, "webhook.stripe.refund_created", event_type="refund.created"),
            "push": insert_event(db, ws, "webhook.github.push", event_type="push"),
            "pr": insert_event(db, ws, "webhook.github.pull_request", event_type="pull_request"),
            "ticket": insert_event(db, ws, "webhook.zendesk.ticket_created", event_type="ticket.created"),
            "tickets": insert_event(db, ws, "webhook.zendesk.tickets", event_type="tickets"),
            "custom": insert_event(db, ws, "custom.thing.x", event_type="x"),
            "stripe_bare": insert_event(db, ws, "webhook.stripex.a", event_type="a"),
            "lonely": insert_event(db, lonely, "webhook.stripe.payment_succeeded"),
        }
        want = {
            "pay": {exact, exact2, stripe, catch_all, twice},
            "refund": {stripe, catch_all, twice},
            "push": {catch_all, github},
            "pr": {catch_all},
            "ticket": {catch_all, partial},
            "tickets": {catch_all},
            "custom": set(),
            "stripe_bare": {catch_all},
            "lonely": set(),
        }
        w = start_worker(db, ["--out", "-"])
        try:
            wait_drained(db, ws)
            wait_drained(db, lonely)
        finally:
            self.assertEqual(w.stop(), 0, w.stderr_text())
        for name, eid in ev.items():
            with self.subTest(event=name):
                self.assertEqual(runs_of(eid), want[name])
                rows = outbox_rows(db, eid)
                role = db.value("select role from infonchat.event_inbox where id = %s", eid)
                ews = db.value("select workspace_id from infonchat.event_inbox where id = %s", eid)
                self.assertEqual([r["kind"] for r in rows],
                                 [role] + ["agent_run.queued"] * len(want[name]))
                self.assertEqual(rows[0]["topic"], ews + "/" + role)
                self.assertEqual(rows[0]["data"]["id"], eid)
                self.assertEqual(rows[0]["data"]["role"], role)
                runs = {r[0]: r[1:] for r in db.query(
                    "select id, agent_id, chat_id, status from infonchat.agent_runs where event_id = %s", eid)}
                for r in rows[1:]:
                    d = r["data"]
                    self.assertEqual(r["topic"], ews + "/agent_run.queued")
                    self.assertEqual(set(d), {"agent_run_id", "chat_id", "agent_id", "event_id", "role"})
                    self.assertEqual(d["event_id"], eid)
                    self.assertEqual(d["role"], role)
                    self.assertEqual(runs[d["agent_run_id"]], [d["agent_id"], d["chat_id"], "queued"])
                    chat = db.query("select workspace_id, agent_id, event_id from infonchat.chats"
                                    " where id = %s", d["chat_id"])
                    self.assertEqual(chat, [[ews, d["agent_id"], eid]])
                status = db.query("select status, processed_at is not null, attempts, last_error"
                                  " from infonchat.event_inbox where id = %s", eid)
                self.assertEqual(status, [["processed", "t", "0", None]])
        # The hints on stdout are the committed envelopes, as the SQL defines them.
        out = read_lines(w.stdout_path)
        in_db = [r[0] for r in db.query(
            "select infonchat.outbox_envelope(o) from infonchat.event_outbox o"
            " where event_id in (select id from infonchat.event_inbox where workspace_id in (%s, %s))"
            " order by seq", ws, lonely)]
        self.assertEqual(sorted(out), sorted(in_db))
        for ln in out:
            j = json.loads(ln)
            self.assertEqual(list(j), ["v", "seq", "id", "topic", "kind", "workspace_id", "event_id",
                                       "created_at", "data"])
        # One log line per event, with its id.
        for eid in ev.values():
            self.assertEqual(routed_ids(w).count(eid), 1)
        self.assertEqual(db.value("select count(*) from infonchat.agent_runs r join infonchat.agents a"
                                  " on a.id = r.agent_id where a.workspace_id = %s", other), "0")

    def test_role_event_is_the_inbox_envelope(self):
        """data of the role event: the inbox envelope rebuilt from the row,
        payload spliced byte for byte (big numbers, duplicate keys, escapes)."""
        ws = make_workspace(db)
        payload = ('{"id": 12345678901234567890, "amount": 1.10, "a": 1, "a": 2,'
                   ' "e": "\\u00e9\\/\\"", "n": null, "deep": [[{"x": 1e400}]]}')
        e1 = insert_event(db, ws, "webhook.stripe.payment_succeeded", payload=payload,
                          dedupe_key="evt_" + uuid.uuid4().hex,
                          headers='{"content-type": "application/json", "x-webhook-id": "evt_1"}')
        e2 = insert_event(db, ws, "custom.kind.thing", payload='{\n"multi":\t"line"\r\n}',
                          source_kind="custom.kind", event_type='we"ird\\type')
        w = start_worker(db, ["--out", "-"])
        try:
            wait_drained(db, ws)
        finally:
            self.assertEqual(w.stop(), 0, w.stderr_text())
        r1 = outbox_rows(db, e1)[0]
        row = db.query("select source_identifier, dedupe_key,"
                       " to_char(received_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                       " from infonchat.event_inbox where id = %s", e1)[0]
        self.assertTrue(r1["data_text"].endswith(',"payload":' + payload + "}"), r1["data_text"])
        self.assertEqual(list(r1["data"]), ["v", "id", "workspace_id", "source", "source_kind", "event_type",
                                            "role", "dedupe_key", "source_identifier", "received_at",
                                            "headers", "payload"])
        d = r1["data"]
        self.assertEqual((d["v"], d["id"], d["workspace_id"], d["source"], d["source_kind"], d["event_type"],
                          d["role"]), (1, e1, ws, "stripe", "webhook.stripe", "payment.succeeded",
                                       "webhook.stripe.payment_succeeded"))
        self.assertEqual([d["source_identifier"], d["dedupe_key"], d["received_at"]], row)
        self.assertEqual(d["headers"], {"content-type": "application/json", "x-webhook-id": "evt_1"})
        r2 = outbox_rows(db, e2)[0]
        d2 = r2["data"]
        self.assertIsNone(d2["dedupe_key"])
        self.assertEqual((d2["source"], d2["event_type"]), ("custom.kind", 'we"ird\\type'))
        self.assertIn('"payload":{\n"multi":\t"line"\r\n}}', r2["data_text"])
        # The envelope line has the CR/LF/TAB between tokens as spaces (002).
        self.assertNotIn("\n", r2["envelope"])
        self.assertIn('"payload":{ "multi": "line"  }}}', r2["envelope"])
        self.assertIn(r2["envelope"], read_lines(w.stdout_path))

    def test_outbox_envelope_same_as_002(self):
        """003 redefines outbox_envelope() for speed: output identical to
        002's translate() version on awkward data."""
        ws = make_workspace(db)
        eid = insert_event(db, ws, "custom.a.b", payload='{"t":"\\t","x":\t1,\r\n"y":"\\r\\n"}')
        db.execute("insert into infonchat.event_outbox(event_id, workspace_id, kind, topic, data)"
                   " values (%s, %s, %s, %s, %s)", eid, ws, 'k"\n', 't\\/', '{"a":\n\t1,\r"b":"\u00e9"}')
        rows = db.query(
            "select infonchat.outbox_envelope(o) = '{\"v\":1,\"seq\":' || o.seq || ',\"id\":\"' || o.id"
            " || '\",\"topic\":' || to_json(o.topic)::text || ',\"kind\":' || to_json(o.kind)::text"
            " || ',\"workspace_id\":\"' || o.workspace_id || '\",\"event_id\":\"' || o.event_id"
            " || '\",\"created_at\":\"' || to_char(o.created_at at time zone 'UTC',"
            " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || '\",\"data\":'"
            " || translate(o.data::text, E'\\r\\n\\t', '   ') || '}'"
            " from infonchat.event_outbox o where event_id = %s", eid)
        self.assertEqual(rows, [["t"]])
        db.execute("delete from infonchat.event_inbox where id = %s", eid)

    def test_uuid_v7_layout(self):
        """infonchat.uuid_v7() (006): RFC 9562 version 7, variant 10, the
        Unix milliseconds of the call in the first 48 bits, and 74 random
        bits that all vary (a random() scaled past its 53 bits of precision
        would leave low bits always 0), none repeated."""
        rows = db.query("select floor(extract(epoch from clock_timestamp()) * 1000)::bigint,"
                        " array(select infonchat.uuid_v7()::text from generate_series(1, 4000)),"
                        " floor(extract(epoch from clock_timestamp()) * 1000)::bigint")
        t0, ids, t1 = int(rows[0][0]), rows[0][1].strip("{}").split(","), int(rows[0][2])
        self.assertEqual(len(ids), 4000)
        self.assertEqual(len(set(ids)), 4000)
        seen_one = seen_zero = 0
        for u in ids:
            self.assertRegex(u, UUID_RE)
            v = uuid.UUID(u).int
            self.assertEqual(v >> 76 & 0xF, 7, u)             # version
            self.assertEqual(v >> 62 & 0x3, 2, u)             # variant 10
            self.assertTrue(t0 <= v >> 80 <= t1, (u, t0, t1))  # milliseconds of the call
            rand = (v >> 64 & 0xFFF) << 62 | (v & (1 << 62) - 1)
            seen_one |= rand
            seen_zero |= ~rand
        every = (1 << 74) - 1
        self.assertEqual(seen_one & every, every, "a random bit was always 0")
        self.assertEqual(seen_zero & every, every, "a random bit was always 1")
        # ids of calls a millisecond or more apart sort in call order
        a = db.value("select infonchat.uuid_v7()")
        time.sleep(0.003)
        b = db.value("select infonchat.uuid_v7()")
        self.assertLess(a, b)

    def test_role_change_applies(self):
        """agent_roles is read by every batch: a role added now routes the
        next event (the contract allows one second)."""
        ws = make_workspace(db)
        w = start_worker(db, ["--sweep-interval", "50"])
        try:
            e1 = insert_event(db, ws, "webhook.shop.order_paid", event_type="order.paid")
            wait_drained(db, ws)
            self.assertEqual(runs_of(e1), set())
            aid = add_agent(db, ws, "webhook.shop.*")
            time.sleep(1.0)
            e2 = insert_event(db, ws, "webhook.shop.order_paid", event_type="order.paid")
            wait_drained(db, ws)
            self.assertEqual(runs_of(e2), {aid})
            db.execute("delete from infonchat.agent_roles where agent_id = %s", aid)
            time.sleep(1.0)
            e3 = insert_event(db, ws, "webhook.shop.order_paid", event_type="order.paid")
            wait_drained(db, ws)
            self.assertEqual(runs_of(e3), set())
        finally:
            self.assertEqual(w.stop(), 0)


class BatchSize(unittest.TestCase):
    def batches(self, payload_size, n):
        ws = make_workspace(db)
        add_agent(db, ws, "webhook.*")
        insert_events(db, ws, n, payload_size=payload_size)
        w = start_worker(db, ["--log-level", "debug", "--sweep-interval", "50"])
        try:
            wait_drained(db, ws, timeout=scaled(60))
        finally:
            self.assertEqual(w.stop(), 0)
        self.assertEqual(counts(db, ws), {"processed": n})
        return [dict(kv.split("=", 1) for kv in ln.split() if "=" in kv)
                for ln in w.stderr_text().splitlines() if 'msg="batch done"' in ln]

    def test_large_payloads_make_small_batches(self):
        # 120 events of ~200 KB: 2 MiB of envelopes is about 10 of them (the
        # payload is in the role event's envelope; the run's is small).
        done = self.batches(200 * 1024, 120)
        sizes = [(int(b["events"]), int(b["bytes"]), int(b["next_batch_max"])) for b in done]
        self.assertGreater(len(sizes), 8, sizes)
        # Only the first batch of each of the 2 connections, sent before any
        # size was known, is larger: at most 16.
        first = [s for s in sizes if s[0] > 12]
        self.assertLessEqual(len(first), 2, sizes)
        for events, size, nxt in sizes:
            self.assertLessEqual(events, 16, sizes)
            self.assertLessEqual(nxt, 12, sizes)
            self.assertLessEqual(size, 16 * 260 * 1024, sizes)

    def test_small_payloads_keep_batch_max(self):
        done = self.batches(200, 1500)
        self.assertTrue(any(int(b["events"]) > 64 for b in done), done)
        self.assertTrue(all(int(b["next_batch_max"]) == 500 for b in done), done)


class Idle(unittest.TestCase):
    def test_no_busy_wait_while_every_lane_waits(self):
        """With both connections' batches waiting on the database and a sweep
        falling due every 50 ms, the worker must sleep in poll, not spin."""
        ws = make_workspace(db)
        add_agent(db, ws, "webhook.*")
        w = start_worker(db, ["--sweep-interval", "50", "--connections", "2"])
        hold = threading.Thread(target=db.psql, args=(
            "begin; lock table infonchat.event_outbox in exclusive mode;"
            " select pg_sleep(%f); commit;" % scaled(4),))
        try:
            hold.start()
            time.sleep(0.3)
            insert_event(db, ws)          # a sweep claims it and waits on the lock
            time.sleep(0.3)               # the other lane's sweep waits too
            t0 = cpu_seconds(w.pid)
            time.sleep(2.0)
            used = cpu_seconds(w.pid) - t0
            self.assertLess(used, 0.5, "inbox-worker used %.2f s of CPU in 2 s of waiting" % used)
            hold.join()
            wait_drained(db, ws)
        finally:
            hold.join()
            self.assertEqual(w.stop(), 0)


def cpu_seconds(pid):
    """user + system CPU seconds of process pid (all threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Deletion(unittest.TestCase):
    def test_deleting_agent_then_workspace_removes_everything_routed(self):
        """What the worker made goes with its agent, and everything with the
        workspace (cascades, some of them through another table's foreign
        key: 004_redundant_fks.sql)."""
        ws = make_workspace(db)
        keep = add_agent(db, ws, "webhook.*", name="keep")
        gone = add_agent(db, ws, "webhook.*", name="gone")
        w = start_worker(db, ["--sweep-interval", "50"])
        try:
            events = [insert_event(db, ws) for _ in range(3)]
            wait_drained(db, ws)
        finally:
            self.assertEqual(w.stop(), 0)

        def count(table, where="workspace_id = %s", *args):
            return int(db.value("select count(*) from infonchat.%s where %s" % (table, where),
                                *(args or (ws,))))
        self.assertEqual(count("chats"), 6)
        self.assertEqual(count("agent_runs"), 6)
        self.assertEqual(count("event_outbox"), 9)    # a role event and two runs each
        db.execute("delete from infonchat.agents where id = %s", gone)
        self.assertEqual(count("chats", "agent_id = %s", gone), 0)
        self.assertEqual(count("agent_runs", "agent_id = %s", gone), 0)
        self.assertEqual(count("agent_runs", "agent_id = %s", keep), 3)
        db.execute("delete from infonchat.workspaces where id = %s", ws)
        for table in ("event_inbox", "event_outbox", "chats", "agent_runs", "agents", "agent_roles"):
            self.assertEqual(count(table), 0, table)
        self.assertEqual(int(db.value("select count(*) from infonchat.event_outbox"
                                      " where event_id = any(%s::uuid[])",
                                      "{" + ",".join(events) + "}")), 0)

    def test_deleting_a_chat_deletes_its_run(self):
        """chats -> agent_runs keeps its cascade without a foreign key
        (005_run_links_by_trigger.sql)."""
        ws = make_workspace(db)
        agent = add_agent(db, ws, "webhook.*")
        w = start_worker(db, ["--sweep-interval", "50"])
        try:
            events = [insert_event(db, ws) for _ in range(2)]
            wait_drained(db, ws)
        finally:
            self.assertEqual(w.stop(), 0)
        chat = db.value("select chat_id from infonchat.agent_runs where event_id = %s", events[0])
        db.execute("delete from infonchat.chats where id = %s", chat)
        self.assertEqual(runs_of(events[0]), set())
        self.assertEqual(runs_of(events[1]), {agent})

    def test_agent_deleted_while_routing_gets_nothing(self):
        """An agent whose delete is still uncommitted when a batch matches it:
        the batch waits for that transaction and, once it commits, routes the
        event to the other agents only. Without the worker's lock on the
        agent the run would be inserted after the delete's cascade ran, and
        stay behind pointing at no agent."""
        ws = make_workspace(db)
        keep = add_agent(db, ws, "webhook.*", name="keep")
        gone = add_agent(db, ws, "webhook.*", name="gone")
        w = start_worker(db, ["--sweep-interval", "50"])
        hold = threading.Thread(target=db.psql, args=(
            "begin; delete from infonchat.agents where id = '%s';"
            " select pg_sleep(%f); commit;" % (gone, scaled(2)),))
        try:
            hold.start()
            time.sleep(0.3)
            ev = insert_event(db, ws)
            hold.join()
            wait_drained(db, ws)
        finally:
            hold.join()
            self.assertEqual(w.stop(), 0)
        self.assertEqual(runs_of(ev), {keep})
        for table in ("chats", "agent_runs"):
            self.assertEqual(int(db.value("select count(*) from infonchat.%s where agent_id = %%s"
                                          % table, gone)), 0, table)
        self.assertEqual(int(db.value("select count(*) from infonchat.event_outbox"
                                      " where event_id = %s", ev)), 2)


def writer_import(cluster, run_dir, ws, n, prefix, hinted=True):
    """Store n events through inbox-writer --in -, which hints the worker
    listening on run_dir (hinted: one must be there, and get every hint)."""
    lines = []
    for i in range(n):
        lines.append(json.dumps({
            "v": 1, "id": str(uuid.uuid4()), "workspace_id": ws, "source": "stripe",
            "source_kind": "webhook.stripe", "event_type": "payment.succeeded",
            "role": "webhook.stripe.payment_succeeded", "dedupe_key": "%s-%d" % (prefix, i),
            "source_identifier": "%s-%d" % (prefix, i), "received_at": "2026-01-01T00:00:00.000001Z",
            "headers": {}, "payload": {"i": i, "big": 12345678901234567890}}))
    p = subprocess.run([bin_path("inbox-writer"), "--db", cluster.conninfo, "--run-dir", run_dir, "--in", "-"],
                       input=("\n".join(lines) + "\n").encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=scaled(120))
    if p.returncode != 0:
        raise AssertionError("inbox-writer failed: " + p.stderr.decode()[-2000:])
    # every hint was sent: a bulk import queues them while it connects
    if hinted and "hints_dropped=0" not in p.stderr.decode():
        raise AssertionError("inbox-writer dropped hints: " + p.stderr.decode()[-2000:])


class Intake(unittest.TestCase):
    def test_hints_from_inbox_writer(self):
        """With the sweep all but off, events stored by inbox-writer are
        routed at once: its hints reach the worker's PULL socket."""
        ws = make_workspace(db)
        add_agent(db, ws, "webhook.*")
        w = start_worker(db, ["--sweep-interval", "3600000"])
        try:
            t0 = time.monotonic()
            writer_import(db, w.run_dir, ws, 50, "hint-" + uuid.uuid4().hex)
            wait_drained(db, ws, timeout=5)
            self.assertLess(time.monotonic() - t0, scaled(5))
            check_exactly_once(self, db, ws, 1)
        finally:
            self.assertEqual(w.stop(), 0)
        self.assertRegex(w.stderr_text(), r'msg=stopped .*hints=50 ')

    def test_linger(self):
        """--linger: with no batch in flight, hints wait until the first is
        MS old, so two imports a moment apart are routed in one transaction
        (one processed_at) no sooner than MS after the first was stored
        (next_attempt_at, its insert's now()). --linger 0 routes each hint
        at once: two transactions, each soon after its store."""
        for linger in (1000, 0):
            with self.subTest(linger=linger):
                ws = make_workspace(db)
                add_agent(db, ws, "webhook.*")
                w = start_worker(db, ["--sweep-interval", "3600000", "--linger", str(linger)])
                try:
                    prefix = "linger-%d-%s" % (linger, uuid.uuid4().hex)
                    writer_import(db, w.run_dir, ws, 1, prefix + "-a")
                    writer_import(db, w.run_dir, ws, 1, prefix + "-b")
                    wait_drained(db, ws, timeout=10)
                finally:
                    self.assertEqual(w.stop(), 0)
                self.assertRegex(w.stderr_text(), r"msg=ready .* linger_ms=%d " % linger)
                rows = db.query(
                    "select dedupe_key, extract(epoch from processed_at - next_attempt_at)::float8,"
                    " processed_at = max(processed_at) over ()"
                    " from infonchat.event_inbox where workspace_id = %s order by dedupe_key", ws)
                self.assertEqual([r[0] for r in rows], [prefix + "-a-0", prefix + "-b-0"])
                waited_a, waited_b = float(rows[0][1]), float(rows[1][1])
                if linger:
                    self.assertEqual(rows[0][2], "t", "the two events went in two transactions")
                    self.assertGreaterEqual(waited_a, 0.95, rows)
                    self.assertLess(waited_b, waited_a, rows)
                else:
                    self.assertEqual(rows[0][2], "f", "the two events went in one transaction")
                    self.assertLess(waited_a, 0.45, rows)
                    self.assertLess(waited_b, 0.45, rows)
                check_exactly_once(self, db, ws, 1)

    def test_hints_to_the_relay_one_per_batch(self):
        """With a ZeroMQ --out (the relay's socket in the run dir), each
        committed batch sends one hint, the envelope of its last outbox row
        exactly as outbox_envelope() makes it, not one per row: the relay
        reads its rows from the table. A batch's rows share created_at, the
        time of its transaction."""
        ws = make_workspace(db)
        add_agent(db, ws, "webhook.*")
        rd = tmpdir("run")
        pull = ZmtpPull(os.path.join(rd, "outbox-relay.sock"))
        try:
            w = start_worker(db, ["--sweep-interval", "3600000"], run_dir=rd)
            try:
                pull.wait_peer()
                writer_import(db, rd, ws, 300, "last-" + uuid.uuid4().hex)
                wait_drained(db, ws, timeout=30)
                batches = db.query(
                    "select infonchat.outbox_envelope(o) from infonchat.event_outbox o"
                    " where o.seq in (select max(seq) from infonchat.event_outbox"
                    "  where workspace_id = %s group by created_at)", ws)
                wait_until(lambda: len(pull.messages()) >= len(batches), timeout=10,
                           message="hints missing")
            finally:
                self.assertEqual(w.stop(), 0)
            time.sleep(0.2)
            msgs = pull.messages()
        finally:
            pull.close()
        rows = int(db.value("select count(*) from infonchat.event_outbox where workspace_id = %s", ws))
        self.assertEqual(rows, 600)
        self.assertTrue(1 < len(batches) < 300, len(batches))
        self.assertTrue(all(len(m) == 1 for m in msgs), "a hint of more than one frame")
        self.assertEqual(sorted(m[0].decode() for m in msgs), sorted(b[0] for b in batches))
        self.assertRegex(w.stderr_text(), r'msg=stopped .* sent=%d dropped=0' % len(batches))

    def test_backlog_built_while_down(self):
        """inbox-writer stores 3000 events with no worker; the worker started
        later drains them all, each exactly once."""
        ws = make_workspace(db)
        add_agent(db, ws, "webhook.stripe.*")
        run_dir = tmpdir("run")
        writer_import(db, run_dir, ws, 3000, "backlog-" + uuid.uuid4().hex, hinted=False)
        self.assertEqual(counts(db, ws), {"pending": 3000})
        w = start_worker(db, run_dir=run_dir)
        try:
            wait_drained(db, ws)
        finally:
            self.assertEqual(w.stop(), 0)
        check_exactly_once(self, db, ws, 1)
        self.assertEqual(len(set(routed_ids(w))), 3000)

    def test_kill9_mid_batch(self):
        """SIGKILL while a large backlog drains: what committed is whole, the
        rest is still pending; after a restart every event has its outbox
        rows exactly once and its runs once."""
        ws = make_workspace(db)
        add_agent(db, ws, "webhook.*")
        insert_events(db, ws, 15000)
        w = start_worker(db, ["--batch-max", "200"])
        wait_until(lambda: counts(db, ws).get("processed", 0) >= 1500, timeout=30, interval=0.02)
        w.stop(signal.SIGKILL)
        self.assertEqual(w.poll(), -signal.SIGKILL)
        c = counts(db, ws)
        self.assertGreater(c.get("pending", 0), 0, "drained before the kill; make the backlog larger")
        by_state = {}
        for status, role_rows, run_rows, runs in db.query(
                "select e.status, (select count(*) from infonchat.event_outbox o"
                "  where o.event_id = e.id and o.kind = e.role),"
                " (select count(*) from infonchat.event_outbox o"
                "  where o.event_id = e.id and o.kind = 'agent_run.queued'),"
                " (select count(*) from infonchat.agent_runs r where r.event_id = e.id)"
                " from infonchat.event_inbox e where e.workspace_id = %s", ws):
            by_state.setdefault(status, set()).add((role_rows, run_rows, runs))
        self.assertEqual(by_state, {"processed": {("1", "1", "1")}, "pending": {("0", "0", "0")}})
        w2 = start_worker(db)
        try:
            wait_drained(db, ws, timeout=60)
        finally:
            self.assertEqual(w2.stop(), 0)
        check_exactly_once(self, db, ws, 1)

    def test_two_workers(self):
        """Two workers drain one backlog side by side: no event is routed
        twice (one log line per event across both, outbox rows once)."""
        ws = make_workspace(db)
        add_agent(db, ws, "webhook.*")
        add_agent(db, ws, "webhook.stripe.payment_succeeded")
        insert_events(db, ws, 12000)
        run_dir = tmpdir("run")
        w1 = start_worker(db, ["--batch-max", "200", "--in", "@ipc://%s/a.sock" % run_dir])
        w2 = start_worker(db, ["--batch-max", "200", "--in", "@ipc://%s/b.sock" % run_dir])
        try:
            wait_drained(db, ws, timeout=60)
        finally:
            self.assertEqual(w1.stop(), 0)
            self.assertEqual(w2.stop(), 0)
        check_exactly_once(self, db, ws, 2)
        ids1, ids2 = routed_ids(w1), routed_ids(w2)
        both = ids1 + ids2
        self.assertEqual(len(both), 12000)
        self.assertEqual(len(set(both)), 12000, "an event was routed twice")
        self.assertGreater(len(ids1), 0)
        self.assertGreater(len(ids2), 0)


class Failures(unittest.TestCase):
    def test_poison_event_dies_alone(self):
        """An event whose routing always fails (a trigger raises for it) is
        retried with backoff, becomes dead with last_error after
        --max-attempts, and never holds up the others. Replay after the fix."""
        ws = make_workspace(db)
        add_agent(db, ws, "webhook.*")
        insert_events(db, ws, 400)
        poison = insert_event(db, ws)
        insert_events(db, ws, 400)
        db.execute("""
            create function public.poison_%s() returns trigger language plpgsql as $$
            begin
                if new.event_id = '%s' then
                    raise exception 'poisoned event %%', new.event_id;
                end if;
                return new;
            end $$;
            create trigger poison before insert on infonchat.event_outbox
                for each row execute function public.poison_%s();
        """ % (ws.replace("-", ""), poison, ws.replace("-", "")))
        try:
            w = start_worker(db, ["--max-attempts", "3", "--retry-delay", "100", "--sweep-interval", "50"])
            try:
                wait_until(lambda: db.value("select status from infonchat.event_inbox where id = %s",
                                            poison) == "dead", timeout=30)
                wait_drained(db, ws)
            finally:
                self.assertEqual(w.stop(), 0)
        finally:
            db.execute("drop trigger poison on infonchat.event_outbox;"
                       " drop function public.poison_%s()" % ws.replace("-", ""))
        self.assertEqual(counts(db, ws), {"processed": 800, "dead": 1})
        row = db.query("select attempts, last_error, processed_at is not null"
                       " from infonchat.event_inbox where id = %s", poison)[0]
        self.assertEqual(row[0], "3")
        self.assertIn("poisoned event " + poison, row[1])
        self.assertIn("P0001", row[1])
        self.assertEqual(row[2], "t")
        self.assertEqual(outbox_rows(db, poison), [])
        self.assertEqual(runs_of(poison), set())
        log = w.stderr_text()
        self.assertEqual(log.count('msg="event failed, will retry" id=' + poison), 2, log[-3000:])
        self.assertEqual(log.count('msg="event dead" id=' + poison), 1)
        # The others went through exactly once.
        self.assertEqual({v for e, v in per_event_outbox(db, ws).items() if e != poison}, {(1, 1)})
        # Fixed (trigger gone): replay the dead one.
        p = run_worker(db, ["--replay", "--status", "dead", "--workspace", ws, "--out", "-"])
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(counts(db, ws), {"processed": 801})
        self.assertEqual([r["kind"] for r in outbox_rows(db, poison)],
                         ["webhook.stripe.payment_succeeded", "agent_run.queued"])
        self.assertEqual(len(p.stdout.decode().splitlines()), 2)

    def test_database_restart(self):
        """The database goes away and comes back: the worker reconnects and
        carries on; nothing is lost."""
        ws = make_workspace(db)
        add_agent(db, ws, "webhook.*")
        w = start_worker(db, ["--sweep-interval", "100"])
        try:
            insert_events(db, ws, 500)
            db.restart(immediate=True)
            insert_events(db, ws, 500)
            wait_drained(db, ws, timeout=30)
            self.assertTrue(w.running())
        finally:
            self.assertEqual(w.stop(), 0)
        self.assertRegex(w.stderr_text(), r'msg="database connection lost"')
        check_exactly_once(self, db, ws, 1)


class Replay(unittest.TestCase):
    def test_replay_queues_new_runs_once(self):
        ws = make_workspace(db)
        e1 = insert_event(db, ws, "webhook.github.push", event_type="push")
        e2 = insert_event(db, ws, "webhook.stripe.payment_succeeded")
        p = run_worker(db, ["--in", "-", "--out", "-"],
                       input=(envelope_line(db, e1) + "\n" + envelope_line(db, e2) + "\n").encode())
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(runs_of(e1), set())
        aid = add_agent(db, ws, "webhook.github.*")
        # Replay is chosen by workspace, role pattern and time.
        p = run_worker(db, ["--replay", "--workspace", ws, "--role", "webhook.github.*",
                            "--since", "2000-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z",
                            "--out", "-"])
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertRegex(p.stderr.decode(), r'msg="replay done" events=1 routed=1 runs=1 ')
        self.assertEqual(runs_of(e1), {aid})
        rows = outbox_rows(db, e1)
        self.assertEqual([r["kind"] for r in rows], ["webhook.github.push", "agent_run.queued"])
        self.assertEqual(p.stdout.decode().splitlines(), [rows[1]["envelope"]])
        # Again: nothing new, not even the role event.
        p = run_worker(db, ["--replay", "--workspace", ws, "--out", "-"])
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertRegex(p.stderr.decode(), r'msg="replay done" events=2 routed=2 runs=0 ')
        self.assertEqual(p.stdout, b"")
        self.assertEqual(len(outbox_rows(db, e1)), 2)
        self.assertEqual(len(outbox_rows(db, e2)), 1)
        self.assertEqual(counts(db, ws), {"processed": 2})
        # A time the database does not take (no February 31st): exit 65.
        p = run_worker(db, ["--replay", "--since", "2026-02-31T00:00:00Z"])
        self.assertEqual(p.returncode, 65, p.stderr.decode())
        self.assertIn('msg="replay refused by the database"', p.stderr.decode())
        # Filters that choose nothing.
        for args in (["--since", "2100-01-01T00:00:00Z"], ["--until", "2000-01-01T00:00:00Z"],
                     ["--role", "webhook.zendesk.*"], ["--status", "dead"],
                     ["--workspace", str(uuid.uuid4())]):
            p = run_worker(db, ["--replay", "--workspace", ws] + args if args[0] != "--workspace"
                           else ["--replay"] + args)
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            self.assertRegex(p.stderr.decode(), r'msg="replay done" events=0 ', args)


class Pipe(unittest.TestCase):
    def test_stdin_names_events(self):
        """--in - --out -: each envelope line names a stored event; its
        outbox envelopes come out; a line whose event is not in the
        database, or not an envelope, is reported with its number (exit 65)."""
        ws = make_workspace(db)
        aid = add_agent(db, ws, "webhook.stripe.*")
        e1 = insert_event(db, ws)
        e2 = insert_event(db, ws, "webhook.github.push", event_type="push")
        missing = json.loads(envelope_line(db, e1))
        missing["id"] = str(uuid.uuid4())
        lines = [envelope_line(db, e1), "", "not json", envelope_line(db, e2), json.dumps(missing)]
        p = run_worker(db, ["--in", "-", "--out", "-"], input=("\n".join(lines) + "\n").encode())
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 65, err)
        self.assertEqual(runs_of(e1), {aid})
        want = [r["envelope"] for r in outbox_rows(db, e1) + outbox_rows(db, e2)]
        self.assertEqual(sorted(p.stdout.decode().splitlines()), sorted(want))
        self.assertRegex(err, r'msg="bad envelope line" line=3 ')
        self.assertRegex(err, r'msg="event not in database" id=%s .*line=5' % missing["id"])
        self.assertRegex(err, r'msg="event routed" id=%s ' % e1)
        # Again: nothing to do, nothing wrong.
        p = run_worker(db, ["--in", "-", "--out", "-"], input=(lines[0] + "\n").encode())
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stdout, b"")
        self.assertRegex(p.stderr.decode(), r'msg="event not pending" id=%s .*status=processed line=1' % e1)


    def test_shell_pipe_from_inbox_writer(self):
        """inbox-writer --in - --out - | inbox-worker --in - --out -: stored
        envelopes come out as outbox envelopes (DESIGN's debug pipe)."""
        ws = make_workspace(db)
        aid = add_agent(db, ws, "webhook.github.*")
        ids = [str(uuid.uuid4()) for _ in range(3)]
        lines = "".join(json.dumps({
            "v": 1, "id": i, "workspace_id": ws, "source": "github", "source_kind": "webhook.github",
            "event_type": "push", "role": "webhook.github.push", "dedupe_key": i,
            "source_identifier": i, "received_at": "2026-11-26T21:09:34.123456Z",
            "headers": {"x-github-event": "push"}, "payload": "@"}).replace(
                '"@"', '{"ref":"main","n":1.10}') + "\n" for i in ids)
        import shlex
        wrap = os.environ.get("INFONCHAT_WRAP", "")
        cmd = "%s %s --db %s --in - --out - | %s %s --db %s --in - --out -" % (
            wrap, shlex.quote(bin_path("inbox-writer")), shlex.quote(db.conninfo),
            wrap, shlex.quote(bin_path("inbox-worker")), shlex.quote(db.conninfo))
        p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], input=lines.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(30),
                           env=dict(os.environ, INFONCHAT_RUN_DIR="", INFONCHAT_DB=""))
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        out = [json.loads(ln) for ln in p.stdout.decode().splitlines()]
        self.assertEqual(sorted((o["event_id"], o["kind"]) for o in out),
                         sorted([(i, "webhook.github.push") for i in ids] +
                                [(i, "agent_run.queued") for i in ids]))
        for i in ids:
            self.assertEqual(runs_of(i), {aid})
            self.assertEqual(outbox_rows(db, i)[0]["data"]["payload"], {"ref": "main", "n": 1.10})
        self.assertIn('"payload":{"ref":"main","n":1.10}', p.stdout.decode())


class Signals(unittest.TestCase):
    def test_hup_then_term(self):
        ws = make_workspace(db)
        w = start_worker(db, ["--sweep-interval", "50"])
        try:
            w.kill(signal.SIGHUP)
            wait_until(lambda: "reload requested" in w.stderr_text(), timeout=5)
            self.assertTrue(w.running())
            eid = insert_event(db, ws)
            wait_drained(db, ws)
        finally:
            rc = w.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, w.stderr_text())
        self.assertRegex(w.stderr_text(), r'msg=stopped events=\d+ routed=\d+')
        self.assertEqual(len(outbox_rows(db, eid)), 1)

    def test_term_drains_batch_in_flight(self):
        """TERM while batches are in flight: they commit, then exit 0; what
        is committed is whole and the rest stays pending."""
        ws = make_workspace(db)
        add_agent(db, ws, "webhook.*")
        insert_events(db, ws, 20000)
        w = start_worker(db, ["--batch-max", "1000"])
        wait_until(lambda: counts(db, ws).get("processed", 0) > 0, timeout=30, interval=0.01)
        self.assertEqual(w.stop(signal.SIGTERM), 0, w.stderr_text())
        logged = set(routed_ids(w))
        processed = {r[0] for r in db.query("select id from infonchat.event_inbox"
                                            " where workspace_id = %s and status = 'processed'", ws)}
        self.assertEqual(logged, processed)
        self.assertGreater(pending(db, ws), 0)
        w2 = start_worker(db)
        try:
            wait_drained(db, ws, timeout=60)
        finally:
            self.assertEqual(w2.stop(), 0, w2.stderr_text())
        check_exactly_once(self, db, ws, 1)


class PlanStability(unittest.TestCase):
    """The plans a stage prepares while its tables are nearly empty must
    not make every later batch read the whole table."""

    def test_plans_made_on_empty_tables_stay_on_indexes(self):
        """A worker connects while the event tables are empty (and their
        statistics say so, as after a new deployment's first ANALYZE) and
        routes a few batches, with generic plans (as db_prepare_all sets
        for every stage; PGOPTIONS makes sure of it here). Then, with
        autovacuum off for the tables so that no ANALYZE replans them, come
        20,000 due events, held locked by another transaction so that no
        batch can take them, and 20,000 earlier runs of the agent; then 400
        events arrive by hint. Routing them must read neither the table nor
        an index whole: not the pending index, nor the unique index led by
        workspace_id (all the workspace's events), nor agent_runs' index on
        agent_id (all the agent's runs). Each such read, of 20,000 rows per
        batch, would show in the tables' statistics."""
        fresh = Cluster()
        try:
            ws = make_workspace(fresh)
            agent = add_agent(fresh, ws, "webhook.*")
            # statistics of empty tables
            fresh.execute("analyze infonchat.event_inbox, infonchat.agent_runs")
            fresh.execute("alter table infonchat.event_inbox set (autovacuum_enabled = false);"
                          " alter table infonchat.agent_runs set (autovacuum_enabled = false)")
            # hints make the batches; the sweep is only a backstop
            w = start_worker(fresh, ["--sweep-interval", "5000", "--connections", "1"],
                             env={"PGOPTIONS": "-c plan_cache_mode=force_generic_plan"})
            try:
                for i in range(8):
                    writer_import(fresh, w.run_dir, ws, 100, "warm-%d" % i)
                    wait_until(lambda: self.processed(fresh, ws) == 100 * (i + 1),
                               timeout=scaled(30), message="warm-up events not routed")
                fresh.execute(
                    "insert into infonchat.event_inbox(id, workspace_id, source_kind, event_type, role,"
                    " source_identifier, dedupe_key, payload)"
                    " select infonchat.uuid_v7(), %s, 'webhook.stripe', 'payment.succeeded',"
                    "  'webhook.stripe.payment_succeeded', 'backlog', 'backlog-' || g, '{}'"
                    " from generate_series(1, 20000) g", ws, timeout=120)
                # the agent's earlier runs (of events long deleted)
                fresh.execute(
                    "insert into infonchat.agent_runs(id, workspace_id, agent_id, chat_id, event_id)"
                    " select infonchat.uuid_v7(), %s, %s, gen_random_uuid(), gen_random_uuid()"
                    " from generate_series(1, 20000) g", ws, agent, timeout=120)
                # due, but held by another transaction for the rest of the
                # test: claims skip them, and a plan that reads the pending
                # index whole still has to read past them
                def holder():
                    try:
                        fresh.psql("set application_name = 'backlog-holder';"
                                   " begin; select count(*) from (select id from infonchat.event_inbox"
                                   " where source_identifier = 'backlog' for update) held;"
                                   " select pg_sleep(%f); commit;" % scaled(120))
                    except QueryError:
                        pass                  # cancelled below: the end of the test
                hold = threading.Thread(target=holder)
                hold.start()
                time.sleep(1.0)
                before = self.reads(fresh)
                try:
                    for i in range(20):
                        writer_import(fresh, w.run_dir, ws, 20, "hint-%d" % i)
                    wait_until(lambda: self.processed(fresh, ws) == 800 + 400,
                               timeout=scaled(60), message="hinted events not routed")
                    # the worker's counters reach the statistics when it is
                    # idle (at most 10 s later in PostgreSQL 15)
                    wait_until(lambda: self.reads(fresh)["updated"] >= before["updated"] + 400,
                               timeout=scaled(30), message="statistics not flushed")
                    after = self.reads(fresh)
                finally:
                    wait_until(lambda: fresh.value(
                        "select count(pg_cancel_backend(pid)) from pg_stat_activity"
                        " where application_name = 'backlog-holder'") == "1" or not hold.is_alive(),
                        timeout=scaled(30))
                    hold.join()
            finally:
                self.assertEqual(w.stop(), 0)
        finally:
            fresh.stop()
        self.assertEqual(after["seq_read"] - before["seq_read"], 0,
                         "event_inbox read sequentially while routing")
        # a sweep (every 5 s) reads past the 20,000 held rows once; routing
        # the 20 imports by a plan that reads the index whole, 20 times more
        self.assertLess(after["index_read"] - before["index_read"], 100000,
                        "the pending index read whole while routing")
        # none of these serve routing; each read whole per batch would be
        # 400,000 (20 batches) or 8 million (400 events) entries
        for got, what in ((after["by_workspace"] - before["by_workspace"],
                           "the inbox's index led by workspace_id"),
                          (after["runs_by_agent"] - before["runs_by_agent"],
                           "agent_runs' index on agent_id")):
            self.assertLess(got, 20000, what + " read whole while routing")

    @staticmethod
    def processed(cluster, ws):
        """Counted through the index on received_at, which no reads measured
        are of (a condition on workspace_id or status would take another)."""
        return int(cluster.value("set enable_seqscan = off;"
                                 " select count(*) filter (where workspace_id = %s and status = 'processed')"
                                 " from infonchat.event_inbox where received_at > '-infinity'", ws))

    @staticmethod
    def reads(cluster):
        r = scan_counts(cluster, "infonchat.event_inbox", "event_inbox_pending_idx")
        r["by_workspace"] = scan_counts(cluster, "infonchat.event_inbox",
                                        "event_inbox_workspace_id_source_kind_dedupe_key_key")["index_read"]
        r["runs_by_agent"] = scan_counts(cluster, "infonchat.agent_runs",
                                         "agent_runs_agent_id_idx")["index_read"]
        return r


if __name__ == "__main__":
    unittest.main()
