"""Self-check of the test harness: a throwaway cluster, migrated, with the
schema's contract; plain inserts naming only contract columns; query()
telling NULL from '' and keeping odd text intact; restart keeps data."""

import unittest

from harness import Cluster, QueryError, make_workspace

db = None


def setUpModule():
    global db
    db = Cluster()


def tearDownModule():
    if db:
        db.stop()


class HarnessSelfCheck(unittest.TestCase):
    def test_workspace_roundtrip(self):
        ws = make_workspace(db, name="acme")
        rows = db.query("select id, name, require_signature from infonchat.workspaces where id = %s", ws)
        self.assertEqual(rows, [[ws, "acme", "f"]])

    def test_migrations_recorded(self):
        import glob, os
        want = sorted(os.path.basename(f)[:3] for f in glob.glob(os.path.join(
            os.path.dirname(__file__), "..", "..", "sql", "[0-9][0-9][0-9]_*.sql")))
        got = [r[0] for r in db.query("select version from infonchat.schema_migrations order by 1")]
        self.assertEqual(got, want)
        self.assertIn("001", got)
        tables = {r[0] for r in db.query(
            "select table_name from information_schema.tables where table_schema = 'infonchat'")}
        for t in ("workspaces", "event_inbox", "event_outbox", "agents", "agent_roles",
                  "chats", "agent_runs", "webhook_secrets", "schema_migrations"):
            self.assertIn(t, tables)
        # running migrate again is a no-op
        db.migrate()
        import glob, os
        n = len(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "sql", "[0-9][0-9][0-9]_*.sql")))
        self.assertEqual(db.value("select count(*) from infonchat.schema_migrations"), str(n))

    def test_null_empty_and_odd_text(self):
        odd = 'a,b "q" \'s\' \\ back\nnew\tline \x1f %% ü'
        rows = db.query("select %s::text, ''::text, null::text, 1.10::numeric, %s::int", odd, 7)
        self.assertEqual(rows, [[odd, "", None, "1.10", "7"]])
        self.assertEqual(db.query("select 1 where false"), [])
        # without args, % is plain text; with args it is written %%
        self.assertEqual(db.query("select 'x%' like 'x%'"), [["t"]])
        self.assertEqual(db.query("select %s like 'x%%'", "xy"), [["t"]])

    def test_contract_inserts(self):
        ws = make_workspace(db)
        db.execute("""
            insert into infonchat.agents(id, workspace_id, name)
                values ('00000000-0000-4000-8000-0000000000a1', %s, 'bot');
            insert into infonchat.agent_roles(workspace_id, agent_id, role)
                values (%s, '00000000-0000-4000-8000-0000000000a1', 'webhook.stripe.*');
            insert into infonchat.webhook_secrets(workspace_id, source, scheme, secret)
                values (%s, 'stripe', 'stripe', 'whsec_x');
        """, ws, ws, ws)
        eid = db.value("""
            insert into infonchat.event_inbox(workspace_id, source_kind, event_type, role,
                source_identifier, dedupe_key, headers, payload)
            values (%s, 'webhook.stripe', 'payment.succeeded', 'webhook.stripe.payment_succeeded',
                'evt_1', 'evt_1', '{"x-webhook-id":"evt_1"}', '{"id": 12345678901234567890, "a": 1.10}')
            returning id""", ws)
        row = db.query("select status, attempts, last_error, processed_at, payload::text "
                       "from infonchat.event_inbox where id = %s", eid)
        self.assertEqual(row, [["pending", "0", None, None, '{"id": 12345678901234567890, "a": 1.10}']])
        # dedupe: same (workspace, source_kind, dedupe_key) is refused
        with self.assertRaises(QueryError):
            db.execute("insert into infonchat.event_inbox(workspace_id, source_kind, event_type, role,"
                       " source_identifier, dedupe_key, payload)"
                       " values (%s, 'webhook.stripe', 'x', 'x', 'x', 'evt_1', '{}')", ws)
        seq = db.value("insert into infonchat.event_outbox(event_id, workspace_id, kind, topic, data)"
                       " values (%s, %s, 'k', 't', '{}') returning seq", eid, ws)
        self.assertTrue(int(seq) >= 1)
        self.assertEqual(db.value("select count(*) from infonchat.event_outbox where published_at is null"
                                  " and event_id = %s", eid), "1")

    def test_restart_keeps_data(self):
        ws = make_workspace(db)
        db.restart(immediate=True)
        self.assertEqual(db.value("select count(*) from infonchat.workspaces where id = %s", ws), "1")
        db.restart()
        self.assertTrue(db.is_running())


if __name__ == "__main__":
    unittest.main()
