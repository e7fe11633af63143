"""Retention (inbox-worker --retention-days, issue 5): processed inbox rows
and published outbox rows older than the age are deleted in small batches;
younger rows, dead events, pending events and events with an unpublished
outbox message are kept; chats and agent runs stay (event_id set null).
Less than 7 days (but 0, never) is a usage error."""

import subprocess
import unittest
import uuid

from harness import Cluster, bin_path, make_workspace, scaled, wait_until
from worker_helpers import add_agent, start_worker

db = None


def setUpModule():
    global db
    db = Cluster()


def tearDownModule():
    if db:
        db.stop()


def old_event(ws, status, age_days, processed_days=None):
    """An inbox row received age_days ago, in status, processed (or dead)
    processed_days (default age_days) ago; returns its id."""
    processed = None if status == "pending" else (processed_days if processed_days is not None else age_days)
    return db.value(
        "insert into infonchat.event_inbox(workspace_id, source_kind, event_type, role,"
        " source_identifier, dedupe_key, headers, payload, received_at, status, processed_at,"
        " attempts, last_error)"
        " values (%s, 'webhook.stripe', 'x', 'webhook.stripe.x', %s, %s, '{}', '{\"a\":1}',"
        " now() - make_interval(days => %s), %s,"
        " case when %s::int is null then null else now() - make_interval(days => %s::int) end,"
        " %s, %s) returning id",
        ws, uuid.uuid4().hex, uuid.uuid4().hex, age_days, status, processed, processed,
        5 if status == "dead" else 1, "boom" if status == "dead" else None)


def outbox(ws, event_id, published_days):
    """An outbox row of event_id, published published_days ago (None: not
    published); returns its id."""
    return db.value(
        "insert into infonchat.event_outbox(event_id, workspace_id, kind, topic, data, created_at,"
        " published_at) values (%s, %s, 'k', %s, '{}', now() - make_interval(days => 60),"
        " case when %s::int is null then null else now() - make_interval(days => %s::int) end)"
        " returning id", event_id, ws, ws + "/k", published_days, published_days)


def exists(table, rid):
    return db.value("select count(*) from infonchat.%s where id = %%s" % table, rid) == "1"


class RetentionTest(unittest.TestCase):

    def test_old_rows_deleted_young_and_dead_kept(self):
        ws = make_workspace(db)
        agent = add_agent(db, ws, "webhook.*")
        gone = old_event(ws, "processed", 40)
        gone_out = outbox(ws, gone, 40)
        chat = db.value("insert into infonchat.chats(workspace_id, agent_id, event_id, title)"
                        " values (%s, %s, %s, 't') returning id", ws, agent, gone)
        young = old_event(ws, "processed", 20)
        young_out = outbox(ws, young, 20)
        young_old_out = outbox(ws, young, 40)         # e.g. from before a replay
        replayed = old_event(ws, "processed", 40, processed_days=2)
        dead = old_event(ws, "dead", 100)
        unpublished = old_event(ws, "processed", 40)
        unpublished_out = outbox(ws, unpublished, None)
        # more than one batch (1000) of old rows
        db.execute(
            "insert into infonchat.event_inbox(workspace_id, source_kind, event_type, role,"
            " source_identifier, dedupe_key, payload, received_at, status, processed_at)"
            " select %s, 'webhook.bulk', 'x', 'webhook.bulk.x', 'b' || g, 'b' || g, '{}',"
            " now() - interval '35 days', 'processed', now() - interval '35 days'"
            " from generate_series(1, 2500) g", ws)

        w = start_worker(db, ["--retention-days", "30"])
        try:
            wait_until(lambda: "retention: deleted" in w.stderr_text(), timeout=20,
                       message="no retention line\n" + w.stderr_text())
        finally:
            self.assertEqual(w.stop(), 0, w.stderr_text())
        log = w.stderr_text()
        self.assertIn("retention_days=30", log)
        self.assertRegex(log, r'msg="retention: deleted" days=30 inbox=2501 outbox=1\b')
        self.assertFalse(exists("event_inbox", gone))
        self.assertFalse(exists("event_outbox", gone_out))
        self.assertFalse(exists("event_outbox", young_old_out))
        self.assertEqual(db.value("select count(*) from infonchat.event_inbox"
                                  " where source_kind = 'webhook.bulk' and workspace_id = %s", ws), "0")
        for t, rid in (("event_inbox", young), ("event_outbox", young_out),
                       ("event_inbox", replayed), ("event_inbox", dead),
                       ("event_inbox", unpublished), ("event_outbox", unpublished_out)):
            self.assertTrue(exists(t, rid), (t, rid))
        # the chat stays, without its event
        self.assertEqual(db.query("select event_id from infonchat.chats where id = %s", chat), [[None]])

    def test_zero_keeps_everything(self):
        ws = make_workspace(db)
        gone = old_event(ws, "processed", 400)
        w = start_worker(db, ["--retention-days", "0"])
        try:
            self.assertIn("retention_days=0", w.stderr_text())
        finally:
            w.stop()
        self.assertTrue(exists("event_inbox", gone))

    def test_less_than_a_week_is_a_usage_error(self):
        for bad in ("6", "1", "-1", "x", "36501"):
            p = subprocess.run([bin_path("inbox-worker"), "--retention-days", bad, "--db", db.conninfo,
                                "--in", "-"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=scaled(10))
            self.assertEqual(p.returncode, 64, (bad, p.stderr))
            self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
            self.assertIn("--retention-days", p.stderr)


if __name__ == "__main__":
    unittest.main()
