"""Debug pipes (DESIGN.md "Command-line vocabulary"): ingest-httpd --out -
prints one envelope per request; inbox-writer --in - [--out -] is a bulk
import from NDJSON; and the shell pipe ingest-httpd --out - | inbox-writer
--in - stores what was posted."""

import json
import os
import re
import select
import shlex
import subprocess
import unittest
import uuid

from harness import (Cluster, bin_path, free_port, http_request, make_workspace, scaled, stop_session,
                     tmpdir, wait_until)
from ingest_helpers import (UUID_RE, expected_payload, inbox_row, new_key, run_cli, start_httpd,
                            webhook_path)

db = None
WS = None
ENVELOPE_FIELDS = {"v", "id", "workspace_id", "source", "source_kind", "event_type", "role",
                   "dedupe_key", "source_identifier", "received_at", "headers", "payload"}
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
NO_RUN_DIR = {"INFONCHAT_RUN_DIR": None, "INFONCHAT_DB": None}


def setUpModule():
    global db, WS
    db = Cluster()
    WS = make_workspace(db)


def tearDownModule():
    if db:
        db.stop()


def exact(text):
    """JSON parsed keeping what json.loads would lose: duplicate keys
    (object_pairs_hook) and number tokens (as strings)."""
    return json.loads(text, object_pairs_hook=lambda kv: ("obj", kv),
                      parse_int=lambda s: ("num", s), parse_float=lambda s: ("num", s),
                      parse_constant=lambda s: ("num", s))


def member(obj, name):
    """The last value of member name in an exact() object."""
    return [v for k, v in obj[1] if k == name][-1]


class HttpdStdout(unittest.TestCase):
    def test_out_dash_prints_envelopes(self):
        h = start_httpd(None, ["--out", "-"], env=NO_RUN_DIR)
        try:
            key = new_key("evt")
            unknown = str(uuid.uuid4())
            reqs = [
                (WS.upper(), "source=Stripe&event_type=Payment.Succeeded",
                 {"X-Webhook-Id": key, "Authorization": "Bearer secret", "X-Custom": "v"},
                 b'\r\n {\t"id": 12345678901234567890,\n "amount": 1.10, "a":1, "a":2,\r\n'
                 b' "e":"\\u00e9\\/", "big": 1e999}\n'),
                (WS, None, {}, b'{"type":"ping"}'),
                (unknown, "dedupe_key=q", {"X-Request-Id": "r"}, b'{"id":1.50,"event":"x.y"}'),
            ]
            answers = []
            for ws, q, hdrs, body in reqs:
                st, rh, b = http_request(h.port, "POST", webhook_path(ws, q), body, headers=hdrs)
                self.assertEqual(st, 202, (b, h.stderr_text()))
                self.assertEqual(rh.get("content-type"), "application/json")
                j = json.loads(b)
                self.assertIs(j["accepted"], True)
                answers.append(j["event_id"])
            # written before the 202, so it is there now
            out = h.stdout_text()
            # readiness: no writer to wait for
            self.assertEqual(http_request(h.port, "GET", "/readyz")[0], 200)
        finally:
            h.stop()
        self.assertIn("NOT durable", h.stderr_text())
        self.assertTrue(out.endswith("\n"))
        lines = out.split("\n")[:-1]
        self.assertEqual(len(lines), 3, out)
        envs = [json.loads(ln) for ln in lines]
        for (ws, q, hdrs, body), ln, env, eid in zip(reqs, lines, envs, answers):
            self.assertTrue(ENVELOPE_FIELDS <= set(env), env.keys())
            self.assertEqual(env["v"], 1)
            self.assertEqual(env["id"], eid)
            self.assertRegex(env["id"], UUID_RE)
            self.assertEqual(env["id"][14], "7", "not a UUIDv7")
            self.assertEqual(env["workspace_id"], ws.lower())
            self.assertRegex(env["received_at"], TS_RE)
            self.assertIsInstance(env["headers"], dict)
            self.assertEqual(set(env["headers"]), {k.lower() for k in env["headers"]})
            self.assertIsInstance(env["payload"], dict)
            # the payload is the body's text, not a re-serialisation
            want = expected_payload(body)
            self.assertIn('"payload":' + want, ln)
            self.assertEqual(member(exact(ln), "payload"), exact(want))
        a, b, c = envs
        self.assertEqual((a["source"], a["source_kind"], a["event_type"], a["role"]),
                         ("stripe", "webhook.stripe", "Payment.Succeeded", "webhook.stripe.payment_succeeded"))
        # source=stripe: the stripe profile takes the payload id (its token as
        # sent) before the generic X-Webhook-Id (ingest-httpd(1), "Provider profiles")
        self.assertEqual((a["dedupe_key"], a["source_identifier"]),
                         ("12345678901234567890", "12345678901234567890"))
        self.assertEqual(a["headers"]["x-webhook-id"], key)
        self.assertEqual(a["headers"]["authorization"], "[redacted]")
        self.assertEqual(a["headers"]["x-custom"], "v")
        self.assertEqual((b["source"], b["source_kind"], b["event_type"], b["role"]),
                         ("generic", "webhook.generic", "ping", "webhook.generic.ping"))
        self.assertIsNone(b["dedupe_key"])
        self.assertEqual(b["source_identifier"], "generic:" + WS)
        self.assertEqual((c["dedupe_key"], c["source_identifier"], c["event_type"]), ("q", "q", "x.y"))


def envelope(ws, payload, key=None, drop=(), **over):
    """An envelope line; payload is spliced in as text."""
    d = {"v": 1, "id": str(uuid.uuid4()), "workspace_id": ws, "source": "bulk",
         "source_kind": "webhook.bulk", "event_type": "bulk.import", "role": "webhook.bulk.bulk_import",
         "dedupe_key": key, "source_identifier": key or "bulk:" + ws,
         "received_at": "2026-01-02T03:04:05.123456Z", "headers": {"x-a": "b"}}
    d.update(over)
    for k in drop:
        d.pop(k)
    return json.dumps(d)[:-1] + ',"payload":' + payload + "}", d["id"]


class WriterStdin(unittest.TestCase):
    def import_lines(self, lines, extra=(), from_file=False):
        """inbox-writer --in - --out - on lines, given through a pipe or
        (from_file) a regular file, which it reads a whole batch of at once."""
        data = "".join(ln + "\n" for ln in lines).encode("utf-8")
        args = ["--in", "-", "--out", "-", "--db", db.conninfo] + list(extra)
        if not from_file:
            return run_cli("inbox-writer", args, env=NO_RUN_DIR, input=data, timeout=30)
        path = os.path.join(tmpdir("import"), "lines.ndjson")
        with open(path, "wb") as f:
            f.write(data)
        with open(path, "rb") as f:
            return run_cli("inbox-writer", args, env=NO_RUN_DIR, stdin=f, timeout=30)

    def test_bulk_import_with_bad_lines(self):
        g1, id1 = envelope(WS, '{"n":12345678901234567890, "x":1.10,"x":2}', key=new_key())
        g2, id2 = envelope(WS, '{"n":2}')
        g3, id3 = envelope(WS.upper(), '{"e":"\\u00e9\\/"}', key=new_key())
        missing, idm = envelope(WS, '{"n":3}', drop=("event_type",))
        unknown, idu = envelope(str(uuid.uuid4()), '{"n":4}')
        badid, _ = envelope(WS, '{"n":5}', id="not-a-uuid")
        lines = [g1, "this is not JSON", g2, missing, "", unknown, g3, '{"v":1}', badid]
        #        1   2                   3   4        5   6       7   8         9
        p = self.import_lines(lines)
        out, err = p.stdout.decode(), p.stderr.decode()
        self.assertEqual(p.returncode, 65, err)
        self.assertEqual(out.split("\n")[:-1], [g1, g2, g3], "stored lines echoed, in order")
        for n in (2, 4, 6, 8, 9):
            bad = [ln for ln in err.splitlines() if re.search(r"\bline=%d\b" % n, ln)
                   and re.search(r"\blevel=(warn|error)\b", ln)]
            self.assertEqual(len(bad), 1, "line %d not reported:\n%s" % (n, err))
        for n in (1, 3, 5, 7):
            self.assertFalse([ln for ln in err.splitlines() if re.search(r"\bline=%d\b" % n, ln)
                              and re.search(r"\blevel=(warn|error)\b", ln)], err)
        for eid, ln in ((id1, g1), (id2, g2), (id3, g3)):
            row = inbox_row(db, eid)
            self.assertIsNotNone(row, eid)
            env = json.loads(ln)
            self.assertEqual(row["workspace_id"], WS)
            self.assertEqual(row["event_type"], "bulk.import")
            self.assertEqual(row["role"], "webhook.bulk.bulk_import")
            self.assertEqual(row["source_kind"], "webhook.bulk")
            self.assertEqual(row["dedupe_key"], env["dedupe_key"])
            self.assertEqual(row["source_identifier"], env["source_identifier"])
            self.assertEqual(row["headers"], {"x-a": "b"})
            self.assertEqual(row["payload"], ln[ln.index('"payload":') + 10:-1])
            self.assertEqual(db.value("select received_at = '2026-01-02T03:04:05.123456Z' "
                                      "from infonchat.event_inbox where id = %s", eid), "t")
        for eid in (idm, idu):
            self.assertIsNone(inbox_row(db, eid))

    def test_bulk_import_all_good(self):
        key = new_key()
        lines = [envelope(WS, '{"i":%d}' % i)[0] for i in range(30)]
        first, fid = envelope(WS, '{"first":true}', key=key)
        lines.insert(5, first)
        p = self.import_lines(lines)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stdout.decode().split("\n")[:-1], lines)
        # again, with one more line that duplicates the key: nothing is an
        # error, the duplicate is not stored and not passed on; lines
        # already stored (same id) are taken as stored
        dup, did = envelope(WS, '{"dup":true}', key=key)
        p = self.import_lines(lines[:3] + [dup], extra=["--batch-max", "2"])
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertNotIn(dup, p.stdout.decode())
        self.assertIsNone(inbox_row(db, did))
        self.assertEqual(inbox_row(db, fid)["payload"], '{"first":true}')
        self.assertEqual(db.value("select count(*) from infonchat.event_inbox where dedupe_key = %s", key), "1")

    def test_big_batch_mixing_new_and_stored_keys(self):
        """One batch of 406 lines: 300 new events and, among them, 100 whose
        dedupe keys an earlier import stored (other ids) and 6 that repeat
        the key of a new event before them. The insert returns the new ids
        in its own order (by key); each must be matched to its own line, and
        each repeat to the first line with its key, so exactly the 300 new
        lines are stored and passed on."""
        stored = [envelope(WS, '{"old":%d}' % i, key=new_key("old%d" % i)) for i in range(100)]
        p = self.import_lines([ln for ln, _ in stored])
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        new = [envelope(WS, '{"new":%d}' % i, key=new_key("new%d" % i)) for i in range(300)]
        dups = [envelope(WS, '{"again":%d}' % i, key=json.loads(ln)["dedupe_key"])
                for i, (ln, _) in enumerate(stored)]
        repeats = [(envelope(WS, '{"repeat":%d}' % i, key=json.loads(new[i][0])["dedupe_key"]), new[i][1])
                   for i in range(0, 300, 50)]
        lines = []
        for i, (ln, _) in enumerate(new):
            lines.append(ln)
            if i % 3 == 2:
                lines.append(dups[i // 3][0])
            if i % 50 == 7:
                lines.append(repeats[i // 50][0][0])
        p = self.import_lines(lines, extra=["--batch-max", "1000", "--log-level", "debug"], from_file=True)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 0, err[-2000:])
        batches = [ln for ln in err.splitlines() if 'msg="batch committed"' in ln]
        self.assertEqual(len(batches), 1, batches)
        self.assertIn("rows=406", batches[0])
        self.assertEqual(p.stdout.decode().split("\n")[:-1], [ln for ln, _ in new])
        for _, did in dups + [r[0] for r in repeats]:
            self.assertIsNone(inbox_row(db, did))
        logged = dict(re.findall(r'msg="event duplicate" id=(\S+) original=(\S+)', err))
        expect = {did: oid for (_, did), (_, oid) in zip(dups, stored)}
        expect.update({rid: first for (_, rid), first in repeats})
        self.assertEqual(logged, expect)

    def test_large_envelopes_make_small_batches(self):
        # 30 envelopes of ~600 KB: a batch stops at 4 MiB, so 7 or 8 a batch
        # (with 1 KB envelopes --batch-max alone decides).
        pad = "x" * (600 * 1024)
        lines = [envelope(WS, '{"i":%d,"pad":"%s"}' % (i, pad))[0] for i in range(30)]
        p = self.import_lines(lines, extra=["--log-level", "debug"])
        self.assertEqual(p.returncode, 0, p.stderr.decode()[-2000:])
        rows = [int(ln.split("rows=")[1].split()[0]) for ln in p.stderr.decode().splitlines()
                if 'msg="batch committed"' in ln]
        self.assertEqual(sum(rows), 30, rows)
        self.assertGreaterEqual(len(rows), 4, rows)
        self.assertTrue(all(r <= 8 for r in rows), rows)

    def test_empty_input(self):
        p = self.import_lines([])
        self.assertEqual((p.returncode, p.stdout), (0, b""), p.stderr.decode())


class ShellPipe(unittest.TestCase):
    def test_httpd_to_writer_pipe(self):
        port = free_port()
        rfd, wfd = os.pipe()
        log = os.path.join(tmpdir("pipe"), "stderr")
        cmd = "%s --listen 127.0.0.1:%d --out - --notify-fd %d | %s --in - --db %s" % (
            shlex.quote(bin_path("ingest-httpd")), port, wfd,
            shlex.quote(bin_path("inbox-writer")), shlex.quote(db.conninfo))
        env = dict(os.environ)
        env.pop("INFONCHAT_RUN_DIR", None)
        with open(log, "wb") as errf:
            proc = subprocess.Popen(["/bin/sh", "-c", cmd], pass_fds=(wfd,), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=errf, env=env,
                                    start_new_session=True)
        os.close(wfd)
        try:
            r, _, _ = select.select([rfd], [], [], scaled(10))
            self.assertTrue(r and os.read(rfd, 16) == b"\n", "ingest-httpd not ready")
            sent = []
            for i in range(5):
                body = b'{"pipe":%d,"n":12345678901234567890,\n"d":1.10}' % i
                st, _, b = http_request(port, "POST", webhook_path(WS), body,
                                        headers={"X-Webhook-Id": new_key("pipe")})
                self.assertEqual(st, 202, b)
                sent.append((json.loads(b)["event_id"], body))
            wait_until(lambda: all(inbox_row(db, eid) for eid, _ in sent), timeout=10,
                       message="rows not stored through the pipe")
            for eid, body in sent:
                self.assertEqual(inbox_row(db, eid)["payload"], expected_payload(body))
        finally:
            os.close(rfd)
            stop_session(proc)


if __name__ == "__main__":
    unittest.main()
