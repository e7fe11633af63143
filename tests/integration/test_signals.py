"""Signals, the same in every stage (DESIGN.md, STYLE.md): SIGTERM drains and
exits 0, a second SIGTERM exits at once (75), SIGHUP reloads and never
kills. ingest-httpd is the one with work in flight to show the drain."""

import json
import signal
import threading
import time
import unittest

from harness import STAGES, Cluster, Stage, free_port, http_request, make_workspace, scaled, stage_args, wait_until

db = None
WS = None


def setUpModule():
    global db, WS
    db = Cluster()
    WS = make_workspace(db)


def tearDownModule():
    if db is not None:
        db.stop()




class EveryStage(unittest.TestCase):
    def test_hup_reloads_term_exits_zero(self):
        for name in STAGES:
            with self.subTest(stage=name):
                s = Stage(name, stage_args(name, db))
                try:
                    s.kill(signal.SIGHUP)
                    time.sleep(0.3)
                    self.assertIsNone(s.proc.poll(), "%s died of SIGHUP" % name)
                    t0 = time.time()
                    s.kill(signal.SIGTERM)
                    rc = s.proc.wait(timeout=scaled(10))
                    self.assertEqual(rc, 0, s.stderr_text()[-2000:])
                    self.assertLess(time.time() - t0, scaled(10))
                finally:
                    if s.proc.poll() is None:
                        s.kill(signal.SIGKILL)
                        s.proc.wait()


class HttpdDrain(unittest.TestCase):
    def start(self):
        self.port = free_port()
        self.writer = Stage("inbox-writer", stage_args("inbox-writer", db))
        self.httpd = Stage("ingest-httpd", stage_args("ingest-httpd", db, self.port, ["--ack-timeout", "8000"]))
        wait_until(lambda: http_request(self.port, "GET", "/readyz")[0] == 200, timeout=10,
                   message="not ready")

    def tearDown(self):
        for s in (self.httpd, self.writer):
            if s.proc.poll() is None:
                s.kill(signal.SIGCONT)
                s.kill(signal.SIGKILL)
                s.proc.wait()

    def post_in_background(self):
        result = {}

        def go():
            try:
                result["r"] = http_request(self.port, "POST", "/api/v1/webhooks/generic/%s" % WS,
                                           b'{"drain":true}',
                                           headers={"X-Webhook-Id": "drain-%f" % time.time()}, timeout=30)
            except OSError as e:          # an exit at once drops the connection
                result["error"] = e
        t = threading.Thread(target=go, daemon=True)
        t.start()
        return t, result

    def test_term_answers_in_flight_then_exits_zero(self):
        self.start()
        self.writer.kill(signal.SIGSTOP)          # the request will wait for its ack
        t, result = self.post_in_background()
        time.sleep(0.5)
        self.httpd.kill(signal.SIGTERM)
        time.sleep(0.5)
        self.assertIsNone(self.httpd.proc.poll(), "ingest-httpd left with a request in flight")
        self.writer.kill(signal.SIGCONT)          # the commit happens, the ack comes
        t.join(timeout=scaled(15))
        self.assertIn("r", result, result.get("error"))
        st, _, body = result["r"]
        self.assertEqual(st, 202, body)
        eid = json.loads(body)["event_id"]
        self.assertEqual(db.value("select count(*) from infonchat.event_inbox where id = %s", eid), "1")
        self.assertEqual(self.httpd.proc.wait(timeout=scaled(10)), 0, self.httpd.stderr_text()[-2000:])

    def test_second_term_exits_at_once(self):
        self.start()
        self.writer.kill(signal.SIGSTOP)
        t, result = self.post_in_background()
        time.sleep(0.5)
        self.httpd.kill(signal.SIGTERM)
        time.sleep(0.3)
        self.assertIsNone(self.httpd.proc.poll())
        t0 = time.time()
        self.httpd.kill(signal.SIGTERM)
        self.assertEqual(self.httpd.proc.wait(timeout=scaled(5)), 75)
        self.assertLess(time.time() - t0, scaled(2))


if __name__ == "__main__":
    unittest.main()
