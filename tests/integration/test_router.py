"""router and router --tail with real relays and PostgreSQL: topic
filtering by workspace and kind; a stopped subscriber stalls neither the
relay nor other subscribers (it loses what passes its high-water mark);
counters in the log, SIGHUP, SIGTERM with bounded linger; a tail exits 0
on TERM and when its stdout closes; remote subscribers over tcp://."""

import os
import signal
import subprocess
import time
import unittest

from harness import Cluster, bin_path, free_port, scaled, tmpdir, wait_until
from relay_helpers import (Tail, envelopes, insert_outbox, log_values, new_source, run_dir_socket,
                           settle_outbox, start_relay, start_router, unpublished, wait_published)

db = None


def setUpModule():
    global db
    db = Cluster()


def tearDownModule():
    if db:
        db.stop()


class Router(unittest.TestCase):
    def setUp(self):
        settle_outbox(db)
        self.run_dir = tmpdir("run")
        self.stages = []

    def tearDown(self):
        codes = []
        for s in reversed(self.stages):
            s.kill(signal.SIGCONT)
            codes.append((s.name, s.stop(), s.stderr_text()))
        for name, rc, err in codes:
            self.assertEqual(rc, 0, "%s exited %s\n%s" % (name, rc, err[-3000:]))

    def start(self, stage):
        self.stages.append(stage.stage if isinstance(stage, Tail) else stage)
        return stage

    def test_topic_filtering_by_workspace_and_kind(self):
        self.start(start_router(self.run_dir))
        ws1, ev1 = new_source(db)
        ws2, ev2 = new_source(db)
        ws3, ev3 = new_source(db)
        tails = {
            "all": self.start(Tail(self.run_dir)),
            "ws1": self.start(Tail(self.run_dir, topics=[ws1 + "/"])),
            "ws2 agents": self.start(Tail(self.run_dir, topics=[ws2 + "/agent_run."])),
            "agents anywhere": self.start(Tail(self.run_dir, kinds=["agent_run."])),
            "ws1 + ws2 webhooks": self.start(Tail(self.run_dir, topics=[ws1 + "/", ws2 + "/webhook."])),
            "stripe in ws1 or ws3": self.start(Tail(self.run_dir, topics=[ws1 + "/", ws3 + "/"],
                                                    kinds=["webhook.stripe."])),
        }
        self.start(start_relay(db, self.run_dir))
        rows = {
            "ws1 stripe": insert_outbox(db, ws1, ev1, 3, kind="webhook.stripe.payment_succeeded"),
            "ws1 agents": insert_outbox(db, ws1, ev1, 2, kind="agent_run.queued"),
            "ws2 github": insert_outbox(db, ws2, ev2, 3, kind="webhook.github.push"),
            "ws2 agents": insert_outbox(db, ws2, ev2, 2, kind="agent_run.queued"),
            "ws3 stripe": insert_outbox(db, ws3, ev3, 1, kind="webhook.stripe.refund"),
            "ws3 other": insert_outbox(db, ws3, ev3, 1, kind="webhook.other.x"),
        }
        want = {
            "all": sum(rows.values(), []),
            "ws1": rows["ws1 stripe"] + rows["ws1 agents"],
            "ws2 agents": rows["ws2 agents"],
            "agents anywhere": rows["ws1 agents"] + rows["ws2 agents"],
            "ws1 + ws2 webhooks": rows["ws1 stripe"] + rows["ws1 agents"] + rows["ws2 github"],
            "stripe in ws1 or ws3": rows["ws1 stripe"] + rows["ws3 stripe"],
        }
        tails["all"].wait_ids(want["all"])
        wait_published(db, want["all"])
        time.sleep(0.2)
        for name, tail in tails.items():
            with self.subTest(tail=name):
                self.assertEqual(tail.lines(), envelopes(db, want[name]))
        # the kind filter is the tail's own: it counts what it left out
        tails["agents anywhere"].stop()
        self.assertEqual(log_values(tails["agents anywhere"].stage, "stopped", "filtered"), [8])

    def test_stopped_subscriber_stalls_nobody(self):
        # 1000 queued per subscriber: room for the relay's bursts of 500
        router = self.start(start_router(self.run_dir, ["--hwm", "1000"]))
        stopped = self.start(Tail(self.run_dir, extra=["--hwm", "100"]))
        live = self.start(Tail(self.run_dir))
        relay = self.start(start_relay(db, self.run_dir))
        ws, ev = new_source(db)
        stopped.stage.kill(signal.SIGSTOP)
        n = 4000
        t0 = time.monotonic()
        ids = insert_outbox(db, ws, ev, n, data_sql="json_build_object('n', g, 'pad', repeat('x', 2000))")
        live.wait_ids(ids, timeout=20)
        wait_published(db, ids, timeout=20)
        elapsed = time.monotonic() - t0
        self.assertEqual(live.ids(), ids)
        self.assertLess(elapsed, scaled(10), "relay or live subscriber slowed by the stopped one")
        stopped.stage.kill(signal.SIGCONT)
        time.sleep(0.5)
        got = len(stopped.lines())
        self.assertGreater(got, 0)
        self.assertLess(got, n, "the stopped subscriber should have lost what passed its mark")
        # and it is still subscribed: new rows reach it
        more = insert_outbox(db, ws, ev, 5)
        stopped.wait_ids(more)
        live.wait_ids(more)
        self.assertEqual(sum(log_values(relay, "batch published", "rows")), n + 5)
        wait_until(lambda: (log_values(router, "stats", "msgs_in") or [0])[-1] == n + 5, timeout=5)

    def test_router_counters_hup_and_term(self):
        router = self.start(start_router(self.run_dir))
        tail = self.start(Tail(self.run_dir, topics=["a/"]))
        self.start(start_relay(db, self.run_dir))
        ws, ev = new_source(db)
        ids = insert_outbox(db, ws, ev, 5)          # nobody subscribed to these
        wait_published(db, ids)
        wait_until(lambda: log_values(router, "stats", "subscribes"), timeout=5)
        self.assertEqual(log_values(router, "stats", "subscribes")[-1], 1)
        self.assertEqual(log_values(router, "stats", "subscribers")[-1], 1)
        self.assertEqual(log_values(router, "stats", "publishers")[-1], 1)
        # the relay's PUB filters on the subscriptions: nothing was sent
        self.assertEqual(log_values(router, "stats", "msgs_in")[-1], 0)
        self.assertIn('msg=subscribe prefix=a/', router.stderr_text())
        router.kill(signal.SIGHUP)
        wait_until(lambda: "reload requested" in router.stderr_text(), timeout=5)
        self.assertTrue(router.running())
        tail.stop()
        wait_until(lambda: 'msg=unsubscribe prefix=a/' in router.stderr_text(), timeout=5)
        self.assertEqual(router.stop(), 0)
        self.assertIn("msg=stopped msgs_in=0", router.stderr_text())

    def test_term_with_a_stopped_subscriber_exits_soon(self):
        router = self.start(start_router(self.run_dir))
        stopped = self.start(Tail(self.run_dir))
        self.start(start_relay(db, self.run_dir))
        stopped.stage.kill(signal.SIGSTOP)
        ws, ev = new_source(db)
        ids = insert_outbox(db, ws, ev, 3000, data_sql="json_build_object('pad', repeat('x', 2000))")
        wait_published(db, ids)
        t0 = time.monotonic()
        self.assertEqual(router.stop(timeout=10), 0)
        self.assertLess(time.monotonic() - t0, scaled(4), "linger must be bounded")

    def test_tail_exits_on_term_and_when_stdout_closes(self):
        self.start(start_router(self.run_dir))
        tail = Tail(self.run_dir)
        self.assertEqual(tail.stop(), 0)
        self.assertIn("msg=stopped", tail.stage.stderr_text())
        # a reader that goes away: the tail notices even with nothing to print
        p = subprocess.Popen([bin_path("router"), "--tail", "--run-dir", self.run_dir],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            time.sleep(0.3)
            p.stdout.close()
            self.assertEqual(p.wait(timeout=scaled(5)), 0)
            self.assertIn(b"output closed", p.stderr.read())
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stderr.close()

    def test_remote_subscriber_over_tcp(self):
        port = free_port()
        self.start(start_router(self.run_dir, ["--out", "@tcp://127.0.0.1:%d" % port]))
        tail = self.start(Tail(endpoint=">tcp://127.0.0.1:%d" % port))
        self.start(start_relay(db, self.run_dir))
        ws, ev = new_source(db)
        ids = insert_outbox(db, ws, ev, 10)
        tail.wait_ids(ids)
        self.assertEqual(tail.lines(), envelopes(db, ids))
        self.assertFalse(os.path.exists(os.path.join(self.run_dir, "events.sock")))

    def test_relay_binding_subscribers_connect_directly(self):
        endpoint = run_dir_socket(self.run_dir, "direct")
        relay = self.start(start_relay(db, self.run_dir, ["--out", "@" + endpoint]))
        tail = self.start(Tail(endpoint=">" + endpoint))
        ws, ev = new_source(db)
        ids = insert_outbox(db, ws, ev, 10)
        tail.wait_ids(ids)
        self.assertEqual(tail.lines(), envelopes(db, ids))
        self.assertNotIn("not connected", relay.stderr_text())

    def test_several_relays_connect_to_one_router(self):
        router = self.start(start_router(self.run_dir))
        tail = self.start(Tail(self.run_dir))
        other = tmpdir("run")
        # two relays with their own hint sockets, both publishing to this router
        for d in (self.run_dir, other):
            self.start(start_relay(db, d, ["--out", ">" + run_dir_socket(self.run_dir, "router")]))
        wait_until(lambda: log_values(router, "stats", "publishers")[-1:] == [2], timeout=5)
        ws, ev = new_source(db)
        ids = insert_outbox(db, ws, ev, 200)
        tail.wait_ids(ids)
        self.assertEqual(sorted(tail.ids()), sorted(ids))
        self.assertEqual(unpublished(db, ids), 0)


if __name__ == "__main__":
    unittest.main()
