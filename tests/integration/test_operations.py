"""Operating the five programs together: the full debug pipe of README.md,
and one event followed by its id through all five logs (grep <id>)."""

import json
import os
import select
import shlex
import subprocess
import threading
import time
import unittest

from harness import (STAGES, Cluster, Stage, bin_path, free_port, http_request, make_workspace, scaled,
                     stage_args, stop_session, tmpdir, wait_until)

db = None
WS = None
AGENT = "66666666-6666-4666-8666-666666666666"


def setUpModule():
    global db, WS
    db = Cluster()
    WS = make_workspace(db)
    db.execute("insert into infonchat.agents (id, workspace_id, name) values ('%s', '%s', 'ops')" % (AGENT, WS))
    db.execute("insert into infonchat.agent_roles (workspace_id, agent_id, role) values ('%s', '%s', 'webhook.*')"
               % (WS, AGENT))


def tearDownModule():
    if db is not None:
        db.stop()


def webhook(ws, source="ops"):
    return "/api/v1/webhooks/generic/%s?source=%s" % (ws, source)


class FullPipe(unittest.TestCase):
    def test_readme_pipe(self):
        """ingest-httpd --out - | inbox-writer | inbox-worker | outbox-relay, as in README.md."""
        port = free_port()
        rfd, wfd = os.pipe()
        log = os.path.join(tmpdir("fullpipe"), "stderr")
        q = shlex.quote
        cmd = ("%s --listen 127.0.0.1:%d --out - --notify-fd %d"
               " | %s --in - --out - --db %s"
               " | %s --in - --out - --db %s"
               " | %s --in - --out -") % (
            q(bin_path("ingest-httpd")), port, wfd,
            q(bin_path("inbox-writer")), q(db.conninfo),
            q(bin_path("inbox-worker")), q(db.conninfo),
            q(bin_path("outbox-relay")))
        env = dict(os.environ)
        env.pop("INFONCHAT_RUN_DIR", None)
        with open(log, "wb") as errf:
            proc = subprocess.Popen(["/bin/sh", "-c", cmd], pass_fds=(wfd,), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=errf, env=env, start_new_session=True)
        os.close(wfd)
        lines, raw = [], {}

        def read():
            for line in proc.stdout:
                e = json.loads(line)
                raw[e.get("id")] = line
                lines.append(e)

        t = threading.Thread(target=read, daemon=True)
        t.start()
        try:
            r, _, _ = select.select([rfd], [], [], scaled(10))
            self.assertTrue(r and os.read(rfd, 16) == b"\n", "ingest-httpd not ready")
            body = b'{"type":"order.created","id":12345678901234567890,"amount":1.10}'
            st, _, b = http_request(port, "POST", webhook(WS), body, headers={"X-Webhook-Id": "pipe-1"})
            self.assertEqual(st, 202, b)
            eid = json.loads(b)["event_id"]
            wait_until(lambda: len([e for e in lines if e.get("event_id") == eid]) >= 2, timeout=15,
                       message="outbox envelopes did not come out of the pipe: %s" % open(log).read()[-2000:])
            mine = [e for e in lines if e.get("event_id") == eid]
            kinds = sorted(e["kind"] for e in mine)
            self.assertEqual(kinds, ["agent_run.queued", "webhook.ops.order_created"])
            role = next(e for e in mine if e["kind"].startswith("webhook."))
            self.assertEqual(role["topic"], "%s/webhook.ops.order_created" % WS)
            self.assertEqual(role["data"]["id"], eid)
            self.assertEqual(role["data"]["payload"], json.loads(body))
            # the payload text itself survived the whole pipe: the big
            # integer and 1.10 as sent, and the line is what the outbox holds
            self.assertIn(b'"payload":{"type":"order.created","id":12345678901234567890,"amount":1.10}',
                          raw[role["id"]])
            self.assertEqual(raw[role["id"]].rstrip(b"\n"), self._raw_line(role))
        finally:
            os.close(rfd)
            stop_session(proc)

    def _raw_line(self, role):
        # the stored outbox row is the relay's source: compare its text
        return db.value("select infonchat.outbox_envelope(o) from infonchat.event_outbox o where id = %s",
                        role["id"]).encode()


class OneIdFiveLogs(unittest.TestCase):
    def test_grep_event_id_across_all_logs(self):
        port = free_port()
        stages = []
        tail = None
        try:
            for name in STAGES:
                stages.append(Stage(name, stage_args(name, db, port, ["--log-level", "debug"])))
            tail = subprocess.Popen([bin_path("router"), "--tail", "--run-dir", db.run_dir, "--topic", WS + "/"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            got = []
            threading.Thread(target=lambda: [got.append(json.loads(l)) for l in tail.stdout], daemon=True).start()
            time.sleep(0.5)          # the subscription reaches the relay
            wait_until(lambda: http_request(port, "GET", "/readyz")[0] == 200, timeout=10,
                       message="ingest-httpd not ready")
            st, _, b = http_request(port, "POST", webhook(WS), b'{"type":"grep.me"}',
                                    headers={"X-Webhook-Id": "grep-1"})
            self.assertEqual(st, 202, b)
            eid = json.loads(b)["event_id"]
            wait_until(lambda: any(e.get("event_id") == eid for e in got), timeout=15,
                       message="the event never reached the subscriber")
            for s in stages:
                text = s.stderr_text()
                lines = [l for l in text.splitlines() if eid in l]
                self.assertTrue(lines, "%s logged nothing with %s:\n%s" % (s.name, eid, text[-2000:]))
                for l in lines:
                    self.assertRegex(l, r"^ts=\S+ level=\w+ prog=%s msg=" % s.name)
        finally:
            if tail is not None:
                tail.terminate()
                tail.wait()
            for s in reversed(stages):
                s.stop()


if __name__ == "__main__":
    unittest.main()
