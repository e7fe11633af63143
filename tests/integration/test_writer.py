"""inbox-writer behind ingest-httpd: concurrent duplicates, batches mixing
good and refused events, SIGKILL and database crashes under load ("never
202 unless committed"), and the synchronous_commit guard."""

import json
import signal
import threading
import time
import unittest
import uuid

from harness import Cluster, Stage, http_request, make_workspace, scaled, tmpdir, wait_until
from ingest_helpers import (UUID_RE, Pipeline, inbox_row, new_key, start_httpd, wait_ready)

db = None
P = None
WS = None


def setUpModule():
    global db, P, WS
    db = Cluster()
    WS = make_workspace(db)
    P = Pipeline(db)


def tearDownModule():
    if P:
        P.stop()
    if db:
        db.stop()


def in_flight(port):
    body = http_request(port, "GET", "/metrics")[2].decode()
    for ln in body.splitlines():
        if ln.startswith("infonchat_http_in_flight "):
            return int(float(ln.split()[1]))
    return -1


def concurrently(n, fn):
    """Run fn(i) for i in range(n) in n threads started together; return
    the results (an exception counts as the result)."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        try:
            barrier.wait(timeout=scaled(10))
            results[i] = fn(i)
        except Exception as e:     # noqa: BLE001 - reported by the caller
            results[i] = e
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(60))
    return results


class Concurrency(unittest.TestCase):
    def check_same_key(self, p, results, key, bodies):
        for r in results:
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r[0], 202, (r, p.logs()[-2000:]))
            self.assertEqual(r[1].get("content-type"), "application/json")
        answers = [json.loads(r[2]) for r in results]
        ids = {a["event_id"] for a in answers}
        self.assertEqual(len(ids), 1, answers)
        eid = ids.pop()
        self.assertRegex(eid, UUID_RE)
        winners = [i for i, a in enumerate(answers) if a["accepted"] is True]
        self.assertEqual(len(winners), 1, answers)
        self.assertTrue(all(a["accepted"] in (True, False) for a in answers))
        rows = db.query("select id, payload::text from infonchat.event_inbox "
                        "where workspace_id = %s and dedupe_key = %s", WS, key)
        self.assertEqual(rows, [[eid, bodies[winners[0]]]])

    def test_50_concurrent_posts_same_key(self):
        key = new_key("conc")
        bodies = ['{"i":%d}' % i for i in range(50)]
        results = concurrently(50, lambda i: P.post(WS, bodies[i], headers={"X-Webhook-Id": key},
                                                    timeout=30))
        self.check_same_key(P, results, key, bodies)

    def test_50_same_key_in_one_batch(self):
        """With the writer stopped, all 50 queue up and reach it together
        (in one batch, or a few on its connections)."""
        p = Pipeline(db, httpd_args=["--ack-timeout", "20000"])
        try:
            key = new_key("batch")
            bodies = ['{"j":%d}' % i for i in range(50)]
            p.writer.kill(signal.SIGSTOP)
            out = {}
            try:
                t = threading.Thread(target=lambda: out.setdefault("r", concurrently(
                    50, lambda i: p.post(WS, bodies[i], headers={"X-Webhook-Id": key}, timeout=30))))
                t.start()
                wait_until(lambda: in_flight(p.port) == 50, timeout=10)
            finally:
                p.writer.kill(signal.SIGCONT)
            t.join(scaled(60))
            self.check_same_key(p, out["r"], key, bodies)
        finally:
            p.stop()

    def test_batch_mixing_unknown_workspace(self):
        """One batch: good events, duplicates of each other, one event for
        an unknown workspace; only that one is refused (404)."""
        p = Pipeline(db, httpd_args=["--ack-timeout", "20000"])
        try:
            unknown = str(uuid.uuid4())
            dup = new_key("dup")
            reqs = []
            for i in range(20):
                reqs.append((WS, '{"good":%d}' % i, {"X-Webhook-Id": new_key("good")}))
            reqs.insert(7, (unknown, '{"unknown":1}', {"X-Webhook-Id": new_key("unk")}))
            reqs.insert(3, (WS, '{"dup":1}', {"X-Webhook-Id": dup}))
            reqs.append((WS, '{"dup":2}', {"X-Webhook-Id": dup}))
            reqs.append((WS, '{"nokey":1}', {}))
            n = len(reqs)
            p.writer.kill(signal.SIGSTOP)
            out = {}
            try:
                t = threading.Thread(target=lambda: out.setdefault("r", concurrently(
                    n, lambda i: p.post(reqs[i][0], reqs[i][1], headers=reqs[i][2], timeout=30))))
                t.start()
                wait_until(lambda: in_flight(p.port) == n, timeout=10)
            finally:
                p.writer.kill(signal.SIGCONT)
            t.join(scaled(60))
            results = out["r"]
            dup_ids = []
            for (ws, body, hdrs), r in zip(reqs, results):
                self.assertNotIsInstance(r, Exception, r)
                st, rh, b = r
                self.assertEqual(rh.get("content-type"), "application/json")
                j = json.loads(b)
                if ws == unknown:
                    self.assertEqual(st, 404, b)
                    self.assertEqual(j["error"], "workspace_not_found")
                    continue
                self.assertEqual(st, 202, (body, b, p.logs()[-2000:]))
                if hdrs.get("X-Webhook-Id") == dup:
                    dup_ids.append((j["accepted"], j["event_id"]))
                    continue
                self.assertIs(j["accepted"], True)
                row = inbox_row(db, j["event_id"])
                self.assertIsNotNone(row, "202 without its row")
                self.assertEqual(row["payload"], body)
                self.assertEqual(row["dedupe_key"], hdrs.get("X-Webhook-Id"))
            self.assertEqual(sorted(a for a, _ in dup_ids), [False, True])
            self.assertEqual(dup_ids[0][1], dup_ids[1][1])
            self.assertEqual(db.value("select count(*) from infonchat.event_inbox where workspace_id = %s",
                                      unknown), "0")
            self.assertEqual(db.value("select count(*) from infonchat.event_inbox where dedupe_key = %s",
                                      dup), "1")
        finally:
            p.stop()


class LoadGenerator:
    """Threads posting unique events (unique x-webhook-id) until stopped;
    records (key, time, status, headers, body or exception)."""

    def __init__(self, p, ws, prefix, threads=3):
        self.p, self.ws, self.prefix = p, ws, prefix
        self.results = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(t,)) for t in range(threads)]

    def run(self, t):
        i = 0
        while not self.stop_ev.is_set():
            key = "%s-%d-%d" % (self.prefix, t, i)
            i += 1
            t0 = time.monotonic()
            try:
                st, h, b = self.p.post(self.ws, '{"load":"%s"}' % key,
                                       headers={"X-Webhook-Id": key}, timeout=15)
                rec = (key, t0, st, h, b)
            except Exception as e:     # noqa: BLE001
                rec = (key, t0, None, None, e)
            with self.lock:
                self.results.append(rec)
            if rec[2] != 202:
                time.sleep(0.01)   # do not spin while refused

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        for t in self.threads:
            t.join(scaled(30))

    def accepted_after(self, t):
        with self.lock:
            return sum(1 for r in self.results if r[1] >= t and r[2] == 202)


class Crashes(unittest.TestCase):
    def check_load(self, gen, p):
        """Every 202 has its row with exactly the acknowledged id; every
        other answer is a 503 with Retry-After."""
        stored = dict((k, i) for k, i in db.query(
            "select dedupe_key, id from infonchat.event_inbox where workspace_id = %s "
            "and dedupe_key like %s", WS, gen.prefix + "-%"))
        n202 = n503 = 0
        for key, t0, st, h, b in gen.results:
            self.assertIsNotNone(st, "request failed: %r" % (b,))
            if st == 202:
                j = json.loads(b)
                self.assertIs(j["accepted"], True, j)
                self.assertEqual(stored.get(key), j["event_id"],
                                 "202 for %s without its row (or another id)\n%s" % (key, p.logs()[-3000:]))
                n202 += 1
            else:
                self.assertEqual(st, 503, b)
                self.assertEqual(h.get("content-type"), "application/json")
                self.assertIn("retry-after", h)
                n503 += 1
        return n202, n503

    def test_kill_writer_under_load(self):
        p = Pipeline(db, httpd_args=["--ack-timeout", "1000"])
        try:
            with LoadGenerator(p, WS, new_key("kill")) as gen:
                wait_until(lambda: gen.accepted_after(0) >= 20, timeout=10)
                p.writer.kill(signal.SIGKILL)
                self.assertEqual(p.writer.wait(timeout=5), -signal.SIGKILL)
                t_kill = time.monotonic()
                time.sleep(0.3)
                p.start_writer()
                t_back = time.monotonic()
                wait_until(lambda: gen.accepted_after(t_back) >= 20, timeout=15)
            n202, n503 = self.check_load(gen, p)
            self.assertGreater(n503, 0, "no request saw the writer down")
            self.assertGreater(sum(1 for r in gen.results if r[1] < t_kill and r[2] == 202), 0)
            # posts succeed again
            st, _, b = p.post(WS, '{"after":"kill"}')
            self.assertEqual(st, 202, b)
        finally:
            p.stop()

    def test_database_restart_under_load(self):
        p = Pipeline(db, httpd_args=["--ack-timeout", "1000"])
        try:
            with LoadGenerator(p, WS, new_key("pgcrash")) as gen:
                wait_until(lambda: gen.accepted_after(0) >= 20, timeout=10)
                # crashes with an immediate restart; each one is a chance to
                # kill a backend between its INSERT's rows and its COMMIT
                for _ in range(3):
                    db.restart(immediate=True)
                    t_back = time.monotonic()
                    wait_until(lambda: gen.accepted_after(t_back) >= 20, timeout=30,
                               message="no 202 after the database came back\n" + p.logs()[-3000:])
                # a crash with the server down for longer than --ack-timeout
                db.stop_server(immediate=True)
                time.sleep(1.5)
                db.start_server()
                t_back = time.monotonic()
                wait_until(lambda: gen.accepted_after(t_back) >= 20, timeout=30,
                           message="no 202 after the database came back\n" + p.logs()[-3000:])
            self.assertTrue(p.writer.running(), p.logs()[-3000:])
            n202, n503 = self.check_load(gen, p)
            self.assertGreater(n503, 0, "no request saw the database down")
            st, _, b = p.post(WS, '{"after":"restart"}')
            self.assertEqual(st, 202, b)
            self.assertIsNotNone(inbox_row(db, json.loads(b)["event_id"]))
        finally:
            p.stop()


class SynchronousCommitGuard(unittest.TestCase):
    def test_refuses_async_commit(self):
        conninfo = db.conninfo + " options='-c synchronous_commit=off'"
        w = Stage("inbox-writer", ["--db", conninfo, "--run-dir", tmpdir("run")], notify=False)
        try:
            rc = w.wait(timeout=15)
        finally:
            w.stop()
        err = w.stderr_text()
        self.assertEqual(rc, 78, err)
        lines = [ln for ln in err.splitlines() if "level=error" in ln]
        self.assertEqual(len(lines), 1, err)
        self.assertIn("synchronous_commit", lines[0])
        self.assertIn("--allow-async-commit", lines[0])

    def test_allow_async_commit(self):
        conninfo = db.conninfo + " options='-c synchronous_commit=off'"
        run_dir = tmpdir("run")
        w = Stage("inbox-writer", ["--db", conninfo, "--run-dir", run_dir, "--allow-async-commit"])
        h = start_httpd(run_dir)
        try:
            wait_ready(h.port)
            st, _, b = http_request(h.port, "POST", "/api/v1/webhooks/generic/" + WS, b'{"async":1}')
            self.assertEqual(st, 202, b)
            self.assertEqual(inbox_row(db, json.loads(b)["event_id"])["payload"], '{"async":1}')
            self.assertIn("synchronous_commit=off", w.stderr_text())
        finally:
            h.stop()
            w.stop()

    def test_reconnection_turns_synchronous_commit_back_on(self):
        # The server's default goes off while the writer runs; its next
        # connection must not acknowledge on an asynchronous commit.
        run_dir = tmpdir("run")
        w = Stage("inbox-writer", ["--db", db.conninfo, "--run-dir", run_dir])
        h = start_httpd(run_dir)
        try:
            wait_ready(h.port)
            db.execute("alter database postgres set synchronous_commit = off")
            db.execute("select pg_terminate_backend(pid) from pg_stat_activity"
                       " where application_name = 'inbox-writer'")
            wait_until(lambda: http_request(h.port, "POST", "/api/v1/webhooks/generic/" + WS,
                                            b'{"after":"reconnect"}')[0] == 202,
                       timeout=scaled(20), message="no 202 after the reconnection")
            err = w.stderr_text()
            self.assertIn("synchronous_commit is off on a new connection: turned on for it", err)
            self.assertTrue(w.running(), err)
        finally:
            db.execute("alter database postgres reset synchronous_commit")
            h.stop()
            w.stop()

    def test_local_commit_is_durable_enough(self):
        conninfo = db.conninfo + " options='-c synchronous_commit=local'"
        w = Stage("inbox-writer", ["--db", conninfo, "--run-dir", tmpdir("run")])
        self.assertEqual(w.stop(), 0, w.stderr_text())


if __name__ == "__main__":
    unittest.main()
