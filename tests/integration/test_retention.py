"""Retention (inbox-worker --retention-days, issue 5): processed inbox rows
and published outbox rows older than the age are deleted in small batches;
younger rows, dead events, pending events and events with an unpublished
outbox message are kept; chats and agent runs stay (event_id set null).
Less than 7 days (but 0, never) is a usage error."""

import subprocess
import unittest
import uuid

from harness import Cluster, bin_path, make_workspace, scan_counts, scaled, wait_until
from worker_helpers import add_agent, start_worker

db = None


def setUpModule():
    global db
    db = Cluster()


def tearDownModule():
    if db:
        db.stop()


def old_event(ws, status, age_days, processed_days=None, cluster=None):
    """An inbox row received age_days ago, in status, processed (or dead)
    processed_days (default age_days) ago; returns its id. In cluster, by
    default the module's."""
    processed = None if status == "pending" else (processed_days if processed_days is not None else age_days)
    return (cluster or db).value(
        "insert into infonchat.event_inbox(workspace_id, source_kind, event_type, role,"
        " source_identifier, dedupe_key, headers, payload, received_at, status, processed_at,"
        " attempts, last_error)"
        " values (%s, 'webhook.stripe', 'x', 'webhook.stripe.x', %s, %s, '{}', '{\"a\":1}',"
        " now() - make_interval(days => %s), %s,"
        " case when %s::int is null then null else now() - make_interval(days => %s::int) end,"
        " %s, %s) returning id",
        ws, uuid.uuid4().hex, uuid.uuid4().hex, age_days, status, processed, processed,
        5 if status == "dead" else 1, "boom" if status == "dead" else None)


def outbox(ws, event_id, published_days, cluster=None):
    """An outbox row of event_id, published published_days ago (None: not
    published); returns its id."""
    return (cluster or db).value(
        "insert into infonchat.event_outbox(event_id, workspace_id, kind, topic, data, created_at,"
        " published_at) values (%s, %s, 'k', %s, '{}', now() - make_interval(days => 60),"
        " case when %s::int is null then null else now() - make_interval(days => %s::int) end)"
        " returning id", event_id, ws, ws + "/k", published_days, published_days)


def exists(table, rid, cluster=None):
    return (cluster or db).value("select count(*) from infonchat.%s where id = %%s" % table,
                                 rid) == "1"


def retention_cycle(cluster):
    """Start a worker with --retention-days 30, wait for the line of its
    first cycle's end ("retention: deleted"), stop it; return its log."""
    w = start_worker(cluster, ["--retention-days", "30"])
    try:
        wait_until(lambda: "retention: deleted" in w.stderr_text(), timeout=20,
                   message="no retention line\n" + w.stderr_text())
    finally:
        code = w.stop()
    if code != 0:
        raise AssertionError("inbox-worker exited %d\n%s" % (code, w.stderr_text()))
    return w.stderr_text()


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
        replayed = old_event(ws, "processed", 40, processed_days=2)
        replayed_old_out = outbox(ws, replayed, 40)   # published before the replay
        replayed_new_out = outbox(ws, replayed, 2)    # and by the replay
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

        log = retention_cycle(db)
        self.assertIn("retention_days=30", log)
        self.assertRegex(log, r'msg="retention: deleted" days=30 inbox=2501 outbox=1\b')
        self.assertFalse(exists("event_inbox", gone))
        self.assertFalse(exists("event_outbox", gone_out))
        self.assertFalse(exists("event_outbox", replayed_old_out))
        self.assertEqual(db.value("select count(*) from infonchat.event_inbox"
                                  " where source_kind = 'webhook.bulk' and workspace_id = %s", ws), "0")
        for t, rid in (("event_inbox", young), ("event_outbox", young_out),
                       ("event_inbox", replayed), ("event_outbox", replayed_new_out),
                       ("event_inbox", dead),
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


class RetentionPlans(unittest.TestCase):
    """Retention's statements are planned when they run, on whatever the
    statistics say; a cycle that has little or nothing to delete must not
    read the tables whole."""

    def test_cycle_reads_no_table_whole(self):
        """Statistics of empty tables (as after a new deployment's first
        ANALYZE, and autovacuum off for the tables so that none comes later),
        then 20,000 young events, each with a published outbox row, and a
        few old ones: one to delete and one replayed, with a published outbox
        row from before its replay (deleted) and one from the replay (kept).
        One retention cycle does exactly that, and reads neither table by a
        sequential scan: each such read, of 20,000 rows, would show in the
        tables' statistics. (The outbox batch used to look for old published
        rows in the whole outbox, which has no index on published_at; it
        now starts from the old inbox rows that stayed, by received_at.)"""
        fresh = Cluster()
        try:
            ws = make_workspace(fresh)
            fresh.execute("analyze infonchat.event_inbox, infonchat.event_outbox")
            fresh.execute("alter table infonchat.event_inbox set (autovacuum_enabled = false);"
                          " alter table infonchat.event_outbox set (autovacuum_enabled = false)")
            fresh.execute(
                "with e as (insert into infonchat.event_inbox(workspace_id, source_kind, event_type,"
                " role, source_identifier, dedupe_key, payload, received_at, status, processed_at,"
                " routed_at)"
                " select %s, 'webhook.young', 'x', 'webhook.young.x', 'y' || g, 'y' || g, '{}',"
                "  now() - interval '1 day', 'processed', now() - interval '1 day',"
                "  now() - interval '1 day'"
                " from generate_series(1, 20000) g returning id)"
                " insert into infonchat.event_outbox(event_id, workspace_id, kind, topic, data,"
                " created_at, published_at)"
                " select id, %s, 'k', %s, '{}', now() - interval '1 day', now() - interval '1 day'"
                " from e", ws, ws, ws + "/k", timeout=120)
            gone = old_event(ws, "processed", 40, cluster=fresh)
            replayed = old_event(ws, "processed", 40, processed_days=2, cluster=fresh)
            replayed_old_out = outbox(ws, replayed, 40, cluster=fresh)
            replayed_new_out = outbox(ws, replayed, 2, cluster=fresh)
            before = self.seq_reads(fresh)
            log = retention_cycle(fresh)
            self.assertRegex(log, r'msg="retention: deleted" days=30 inbox=1 outbox=1\b')
            # a backend's counters reach the statistics when it exits
            wait_until(lambda: fresh.value(
                "select count(*) from pg_stat_activity where application_name like 'inbox-worker%%'")
                == "0", timeout=scaled(10), message="the worker's backends did not exit")
            after = self.seq_reads(fresh)
            self.assertFalse(exists("event_inbox", gone, fresh))
            self.assertFalse(exists("event_outbox", replayed_old_out, fresh))
            self.assertTrue(exists("event_outbox", replayed_new_out, fresh))
            self.assertEqual(fresh.value("select count(*) from infonchat.event_outbox"), "20001")
        finally:
            fresh.stop()
        for table in ("event_inbox", "event_outbox"):
            self.assertLess(after[table] - before[table], 1000,
                            "%s read by sequential scans: %d rows" % (table, after[table] - before[table]))

    @staticmethod
    def seq_reads(cluster):
        return {t: scan_counts(cluster, "infonchat." + t, t + "_pkey")["seq_read"]
                for t in ("event_inbox", "event_outbox")}


if __name__ == "__main__":
    unittest.main()
