"""ingest-httpd's HTTP API (DESIGN.md "HTTP API"), against a real
inbox-writer and PostgreSQL: every status code that exists now (202 true and
false, 400, 404, 405, 408, 411, 413, 417, 431, 503, 505), the order of the checks ("cheapest
first"), the health endpoints and /metrics.  Signatures (401) and rate
limits (429) belong to a later issue."""

import json
import re
import signal
import socket
import threading
import time
import unittest
import uuid

from harness import Cluster, http_request, make_workspace, raw_http, scaled, wait_until
from ingest_helpers import (UUID_RE, WEBHOOK, Pipeline, inbox_count,
                            inbox_row, new_key, parse_response, recv_until, start_httpd,
                            tmpdir, wait_ready, webhook_path)

db = None
P = None          # inbox-writer + ingest-httpd (defaults)
SMALL = None      # a second ingest-httpd on P's writer, --max-body 1k
WS = None


def setUpModule():
    global db, P, SMALL, WS
    db = Cluster()
    WS = make_workspace(db)
    P = Pipeline(db)
    SMALL = start_httpd(P.run_dir, ["--max-body", "1k"])
    wait_ready(SMALL.port)


def tearDownModule():
    for s in (SMALL, P):
        if s is not None:
            s.stop()
    if db:
        db.stop()


def total_rows():
    return int(db.value("select count(*) from infonchat.event_inbox"))


def raw_request(method, path, headers=(), body=b"", host=True):
    """Request bytes exactly as given (no Content-Length unless in headers)."""
    lines = ["%s %s HTTP/1.1" % (method, path)]
    if host:
        lines.append("Host: 127.0.0.1")
    lines += ["%s: %s" % kv if isinstance(kv, tuple) else kv for kv in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Checks(unittest.TestCase):
    def assertJsonType(self, hdrs):
        self.assertEqual(hdrs.get("content-type", "").split(";")[0].strip(), "application/json", hdrs)

    def assertAccepted(self, resp, accepted=True, msg=None):
        st, hdrs, body = resp
        self.assertEqual(st, 202, (body, msg, P.logs()[-3000:]))
        self.assertJsonType(hdrs)
        j = json.loads(body)
        self.assertEqual(set(j), {"accepted", "event_id"}, j)
        self.assertIs(j["accepted"], accepted, j)
        self.assertRegex(j["event_id"], UUID_RE)
        return j["event_id"]

    def assertError(self, resp, status, code=None, msg=None):
        st, hdrs, body = resp
        self.assertEqual(st, status, (body, msg))
        self.assertJsonType(hdrs)
        j = json.loads(body)
        self.assertIsInstance(j.get("error"), str, j)
        self.assertIsInstance(j.get("message"), str, j)
        self.assertTrue(j["message"], j)
        if code is not None:
            self.assertEqual(j["error"], code, (j, msg))
        return j


class Accepted202(Checks):
    def test_accepted_true_then_duplicate_false(self):
        key = new_key("evt")
        body = b'{"type":"payment.succeeded","amount":12345678901234567890}'
        eid = self.assertAccepted(P.post(WS, body, headers={"X-Webhook-Id": key}))
        row = inbox_row(db, eid)
        self.assertIsNotNone(row, "202 without its row")
        self.assertEqual(row["workspace_id"], WS)
        self.assertEqual(row["dedupe_key"], key)
        self.assertEqual(row["payload"], body.decode())
        self.assertEqual(row["status"], "pending")
        # the same dedupe key again: the original's id, nothing new stored
        n = inbox_count(db, WS)
        eid2 = self.assertAccepted(P.post(WS, b'{"other":1}', headers={"X-Webhook-Id": key}),
                                   accepted=False)
        self.assertEqual(eid2, eid)
        self.assertEqual(inbox_count(db, WS), n)
        self.assertEqual(inbox_row(db, eid)["payload"], body.decode())
        # a different source is a different source_kind: not a duplicate
        eid3 = self.assertAccepted(P.post(WS, b'{}', query="source=other",
                                          headers={"X-Webhook-Id": key}))
        self.assertNotEqual(eid3, eid)
        self.assertEqual(inbox_row(db, eid3)["source_kind"], "webhook.other")

    def test_any_content_type_is_accepted(self):
        for ct in ("text/plain", "application/x-www-form-urlencoded", "image/png"):
            with self.subTest(ct=ct):
                eid = self.assertAccepted(P.post(WS, b'{"ct":1}', headers={"Content-Type": ct}))
                self.assertEqual(inbox_row(db, eid)["headers"]["content-type"], ct)

    def test_upper_case_workspace_id(self):
        eid = self.assertAccepted(P.post(WS.upper(), b'{"u":1}'))
        self.assertEqual(inbox_row(db, eid)["workspace_id"], WS)


class WorkspaceIdForm400(Checks):
    def bad_ids(self):
        u = WS
        return {
            "35 chars": u[:-1],
            "37 chars": u + "a",
            "non-hex": "g" + u[1:],
            "no hyphens": u.replace("-", ""),
            "32 hex + 4 hyphens moved": u[:7] + "-" + u[7] + u[9:],
            "braces": "{" + u + "}",
            "urn": "urn:uuid:" + u,
            "%2F inside": u[:8] + "%2F" + u[11:],
            "%2F appended": u + "%2F",
            "%00 appended": u + "%00",
            "%00 inside": u[:8] + "%00" + u[11:],
            "trailing slash": u + "/",
            "extra segment": u + "/x",
            "10 KB": "a" * 10240,
            "10 KB uuid-ish": (u + "-") * 280,
            "space-like": u[:8] + "+" + u[9:],
        }

    def test_bad_workspace_id_forms(self):
        before = total_rows()
        for name, wid in self.bad_ids().items():
            with self.subTest(form=name):
                self.assertError(http_request(P.port, "POST", WEBHOOK + wid, b'{"a":1}'),
                                 400, "invalid_workspace_id", name)
        self.assertEqual(total_rows(), before)

    def test_bad_form_with_query(self):
        self.assertError(P.post(WS[:-1], b'{}', query="source=x"), 400, "invalid_workspace_id")


def nested(levels):
    """An object nested `levels` deep in all (the top-level object is 1)."""
    return ('{"a":' + "[" * (levels - 1) + "]" * (levels - 1) + "}").encode()


class Body400(Checks):
    BAD = [
        ("not JSON", b'{"a":}', "invalid_json"),
        ("not JSON either", b"hello", "invalid_json"),
        ("single quotes", b"{'a':1}", "invalid_json"),
        ("trailing comma", b'{"a":1,}', "invalid_json"),
        ("trailing garbage", b'{"a":1} x', "invalid_json"),
        ("two objects", b'{}{}', "invalid_json"),
        ("leading zero", b'{"a":01}', "invalid_json"),
        ("NaN", b'{"a":NaN}', "invalid_json"),
        ("raw control char", b'{"a":"x\x01"}', "invalid_json"),
        ("raw newline in string", b'{"a":"x\ny"}', "invalid_json"),
        ("byte order mark", b'\xef\xbb\xbf{}', "invalid_json"),
        ("array", b'[{"a":1}]', "not_object"),
        ("string", b'"{}"', "not_object"),
        ("number", b"1", "not_object"),
        ("null", b"null", "not_object"),
        ("invalid UTF-8 in string", b'{"a":"\xff"}', "invalid_utf8"),
        ("overlong UTF-8", b'{"a":"\xc0\xaf"}', "invalid_utf8"),
        ("encoded surrogate", b'{"a":"\xed\xa0\x80"}', "invalid_utf8"),
        ("latin-1 key", b'{"\xe9":1}', "invalid_utf8"),
        ("lone high surrogate escape", b'{"a":"\\ud800"}', "unpaired_surrogate"),
        ("lone low surrogate escape", b'{"a":"\\udc00x"}', "unpaired_surrogate"),
        ("reversed surrogates", b'{"a":"\\udc00\\ud800"}', "unpaired_surrogate"),
        ("lone surrogate in key", b'{"\\ud83d":1}', "unpaired_surrogate"),
        ("empty body", b"", "empty_body"),
        ("whitespace only", b" \r\n\t ", "empty_body"),
        ("1001 levels", nested(1001), "too_deep"),
        ("100000 levels", b"[" * 100000, "too_deep"),
    ]

    def test_bad_bodies(self):
        before = inbox_count(db, WS)
        for name, body, code in self.BAD:
            with self.subTest(body=name):
                self.assertError(P.post(WS, body), 400, code, name)
        self.assertEqual(inbox_count(db, WS), before)

    def test_1000_levels_accepted(self):
        body = nested(1000)
        eid = self.assertAccepted(P.post(WS, body))
        self.assertEqual(inbox_row(db, eid)["payload"], body.decode())

    def test_valid_utf8_and_surrogate_pair_accepted(self):
        body = '{"a":"h\u00e9llo \U0001F600","b":"\\ud83d\\ude00"}'.encode()
        eid = self.assertAccepted(P.post(WS, body))
        self.assertEqual(inbox_row(db, eid)["payload"], body.decode())


class Query400(Checks):
    def test_bad_source(self):
        before = inbox_count(db, WS)
        for q in ("source=-x", "source=_x", "source=a.b", "source=a%20b", "source=a+b",
                  "source=" + "a" * 65, "source=%C3%A9", "source=a/b", "source=a%2Fb"):
            with self.subTest(query=q):
                self.assertError(P.post(WS, b'{}', query=q), 400, "invalid_source", q)
        self.assertEqual(inbox_count(db, WS), before)

    def test_good_sources(self):
        for q, kind in (("source=" + "a" * 64, "webhook." + "a" * 64),
                        ("source=0-a_b", "webhook.0-a_b"),
                        ("source=Stripe", "webhook.stripe"),
                        ("source=", "webhook.generic"),       # empty counts as absent
                        ("unknown=1&unknown=2", "webhook.generic")):   # unknown ones ignored
            with self.subTest(query=q):
                eid = self.assertAccepted(P.post(WS, b'{}', query=q))
                self.assertEqual(inbox_row(db, eid)["source_kind"], kind)

    def test_known_parameter_twice(self):
        before = inbox_count(db, WS)
        for q in ("event_type=a&event_type=b", "source=a&source=a", "dedupe_key=1&dedupe_key=2",
                  "source_identifier=x&x=1&source_identifier=y", "event_type=&event_type=b",
                  "dedupe_key=a&dedupe_key=", "event%5Ftype=a&event_type=b"):
            with self.subTest(query=q):
                self.assertError(P.post(WS, b'{}', query=q), 400, "invalid_query", q)
        self.assertEqual(inbox_count(db, WS), before)

    def test_malformed_percent_escapes(self):
        before = inbox_count(db, WS)
        for q in ("event_type=%zz", "event_type=%4", "event_type=abc%", "dedupe_key=%G0",
                  "source=%", "source_identifier=a%2", "event_type=%%41",
                  "event_type=%FF", "event_type=%C3", "dedupe_key=%00", "event_type=a%00b",
                  "even%t_type=x"):
            with self.subTest(query=q):
                self.assertError(P.post(WS, b'{}', query=q), 400, "invalid_query", q)
        self.assertEqual(inbox_count(db, WS), before)


class NotFound404(Checks):
    def test_unknown_workspace(self):
        other = str(uuid.uuid4())
        before = total_rows()
        self.assertError(P.post(other, b'{"a":1}', headers={"X-Webhook-Id": new_key()}),
                         404, "workspace_not_found")
        self.assertError(P.post(other.upper(), b'{"a":1}'), 404, "workspace_not_found")
        self.assertEqual(total_rows(), before)

    def test_unknown_paths(self):
        paths = ["/", "/api", "/api/v1/webhooks/generic",
                 "/api/v1/webhooks/stripe/" + WS, "/API/v1/webhooks/generic/" + WS,
                 "/api/v1/webhooks/generic" + WS, "/healthz/", "/healthz/x", "/metricsx",
                 "/readyz.json", "//api/v1/webhooks/generic/" + WS]
        for path in paths:
            for method in ("GET", "POST"):
                with self.subTest(path=path, method=method):
                    self.assertError(http_request(P.port, method, path, b'{}' if method == "POST" else b""),
                                     404, "not_found", path)


class MethodNotAllowed405(Checks):
    def test_webhook_wants_post(self):
        path = webhook_path(WS)
        for method, body in (("GET", b""), ("PUT", b'{"a":1}'), ("DELETE", b""), ("PATCH", b'{}'),
                             ("OPTIONS", b"")):
            with self.subTest(method=method):
                st, hdrs, b = http_request(P.port, method, path, body)
                self.assertError((st, hdrs, b), 405, "method_not_allowed", method)
                self.assertEqual(hdrs.get("allow"), "POST")
        # HEAD: same status and headers, no body
        st, hdrs, b = http_request(P.port, "HEAD", path)
        self.assertEqual((st, b), (405, b""))
        self.assertEqual(hdrs.get("allow"), "POST")
        # the method is checked before the workspace id's form
        st, hdrs, b = http_request(P.port, "GET", WEBHOOK + "nonsense")
        self.assertError((st, hdrs, b), 405, "method_not_allowed")

    def test_health_wants_get(self):
        for path in ("/healthz", "/readyz", "/metrics"):
            for method in ("POST", "PUT", "DELETE"):
                with self.subTest(path=path, method=method):
                    st, hdrs, b = http_request(P.port, method, path, b"")
                    self.assertError((st, hdrs, b), 405, "method_not_allowed")
                    allow = [m.strip() for m in hdrs.get("allow", "").split(",")]
                    self.assertIn("GET", allow)
                    self.assertNotIn(method, allow)


class LengthRequired411(Checks):
    def test_post_without_length(self):
        before = total_rows()
        raw = raw_http(P.port, raw_request("POST", webhook_path(WS)) + b'{"a":1}')
        resp = parse_response(raw)
        self.assertEqual(len(resp), 1, raw)
        self.assertError(resp[0], 411, "length_required")
        self.assertEqual(total_rows(), before)


class TooLarge413(Checks):
    """SMALL: --max-body 1k (1024 bytes)."""

    def body_of(self, size):
        pad = size - len(b'{"p":""}')
        b = b'{"p":"' + b"x" * pad + b'"}'
        assert len(b) == size
        return b

    def post_small(self, ws, body, query=None, headers=None):
        return http_request(SMALL.port, "POST", webhook_path(ws, query), body, headers=headers)

    def test_limit_is_inclusive(self):
        body = self.body_of(1024)
        eid = self.assertAccepted(self.post_small(WS, body))
        self.assertEqual(inbox_row(db, eid)["payload"], body.decode())
        before = inbox_count(db, WS)
        self.assertError(self.post_small(WS, self.body_of(1025)), 413, "body_too_large")
        self.assertEqual(inbox_count(db, WS), before)
        # the default limit (1 MiB) on the other server takes 1025 bytes
        self.assertAccepted(P.post(WS, self.body_of(1025)))

    def test_huge_content_length_answered_without_body(self):
        s = socket.create_connection(("127.0.0.1", SMALL.port), timeout=scaled(5))
        try:
            s.sendall(raw_request("POST", webhook_path(WS), [("Content-Length", "1000000000000")]))
            data = recv_until(s, lambda d: len(parse_response(d)) >= 1, 3)
        finally:
            s.close()
        resp = parse_response(data)
        self.assertEqual(len(resp), 1, data)
        self.assertError(resp[0], 413, "body_too_large")

    def test_expect_100_continue_oversize_refused_before_body(self):
        before = inbox_count(db, WS)
        s = socket.create_connection(("127.0.0.1", SMALL.port), timeout=scaled(5))
        try:
            s.sendall(raw_request("POST", webhook_path(WS),
                                  [("Content-Length", "2000"), ("Expect", "100-continue")]))
            # nothing of the body has been sent: the answer must come now
            data = recv_until(s, lambda d: any(r[0] >= 200 for r in parse_response(d)), 3)
        finally:
            s.close()
        resp = parse_response(data)
        self.assertTrue(resp, "no answer before the body was sent: %r" % data)
        self.assertNotIn(100, [r[0] for r in resp], data)
        self.assertError(resp[0], 413, "body_too_large")
        self.assertEqual(inbox_count(db, WS), before)

    def test_expect_100_continue_within_limit(self):
        body = b'{"expect":"continue"}'
        s = socket.create_connection(("127.0.0.1", SMALL.port), timeout=scaled(5))
        try:
            s.sendall(raw_request("POST", webhook_path(WS),
                                  [("Content-Length", str(len(body))), ("Expect", "100-continue")]))
            first = recv_until(s, lambda d: b"\r\n\r\n" in d, 3)
            self.assertTrue(first.startswith(b"HTTP/1.1 100 "), first)
            s.sendall(body)
            data = first + recv_until(s, lambda d: len(parse_response(first + d)) >= 2, 5)
        finally:
            s.close()
        resp = parse_response(data)
        self.assertEqual([r[0] for r in resp], [100, 202], data)
        eid = self.assertAccepted(resp[1])
        self.assertEqual(inbox_row(db, eid)["payload"], body.decode())

    def chunked(self, body, size):
        out = b""
        for i in range(0, len(body), size):
            c = body[i:i + size]
            out += b"%x\r\n" % len(c) + c + b"\r\n"
        return out + b"0\r\n\r\n"

    def test_chunked_over_limit(self):
        before = inbox_count(db, WS)
        for name, chunk in (("many small chunks", 100), ("one big chunk", 2000)):
            with self.subTest(name):
                req = raw_request("POST", webhook_path(WS), [("Transfer-Encoding", "chunked")]) + \
                    self.chunked(self.body_of(1100), chunk)
                resp = parse_response(raw_http(SMALL.port, req))
                self.assertEqual(len(resp), 1, resp)
                self.assertError(resp[0], 413, "body_too_large")
        self.assertEqual(inbox_count(db, WS), before)

    def test_chunked_within_limit(self):
        body = self.body_of(1024)
        req = raw_request("POST", webhook_path(WS),
                          [("Transfer-Encoding", "chunked"), ("Connection", "close")]) + \
            self.chunked(body, 300)
        resp = parse_response(raw_http(SMALL.port, req))
        self.assertEqual(len(resp), 1, resp)
        eid = self.assertAccepted(resp[0])
        self.assertEqual(inbox_row(db, eid)["payload"], body.decode())


class CheckOrder(Checks):
    """path+method, workspace_id form, size, body, workspace existence."""

    def test_order(self):
        unknown = str(uuid.uuid4())
        big = b'{"p":"' + b"x" * 2000 + b'"}'
        before = total_rows()
        cases = [
            ("invalid body, unknown workspace", SMALL.port, "POST", WEBHOOK + unknown, b'{"a":', 400, "invalid_json"),
            ("not an object, unknown workspace", SMALL.port, "POST", WEBHOOK + unknown, b'[]', 400, "not_object"),
            ("oversize body, malformed id", SMALL.port, "POST", WEBHOOK + WS[:-1], big, 400, "invalid_workspace_id"),
            ("oversize invalid body, malformed id", SMALL.port, "POST", WEBHOOK + "x", b"[" * 2000, 400, "invalid_workspace_id"),
            ("oversize invalid body", SMALL.port, "POST", WEBHOOK + WS, b"[" * 2000, 413, "body_too_large"),
            ("oversize body, unknown workspace", SMALL.port, "POST", WEBHOOK + unknown, big, 413, "body_too_large"),
            ("oversize body, wrong method", SMALL.port, "PUT", WEBHOOK + WS, big, 405, "method_not_allowed"),
            ("oversize body, unknown path", SMALL.port, "POST", "/nowhere", big, 404, "not_found"),
            ("malformed id, wrong method", P.port, "PUT", WEBHOOK + "x", b"{}", 405, "method_not_allowed"),
            ("bad query, unknown workspace", P.port, "POST", WEBHOOK + unknown + "?source=-", b"{}", 400, "invalid_source"),
            ("bad body, bad query... malformed id first", P.port, "POST", WEBHOOK + "x?source=-", b"[", 400, "invalid_workspace_id"),
        ]
        for name, port, method, path, body, status, code in cases:
            with self.subTest(name):
                self.assertError(http_request(port, method, path, body), status, code, name)
        # chunked: the size is only known while reading, but the id's form comes first
        req = raw_request("POST", WEBHOOK + "not-a-uuid", [("Transfer-Encoding", "chunked")]) + \
            b"800\r\n" + b"x" * 2048 + b"\r\n0\r\n\r\n"
        resp = parse_response(raw_http(SMALL.port, req))
        self.assertEqual(len(resp), 1, resp)
        self.assertError(resp[0], 400, "invalid_workspace_id")
        self.assertEqual(total_rows(), before)


class Unavailable503(Checks):
    def test_writer_not_running(self):
        h = start_httpd(tmpdir("run-alone"))
        try:
            before = total_rows()
            t0 = time.monotonic()
            st, hdrs, b = http_request(h.port, "POST", webhook_path(WS), b'{"a":1}')
            self.assertError((st, hdrs, b), 503, None, h.stderr_text())
            self.assertRegex(hdrs.get("retry-after", ""), r"^[0-9]+$")
            self.assertLess(time.monotonic() - t0, scaled(4), "503 should not wait for the ack timeout")
            st, hdrs, b = http_request(h.port, "GET", "/readyz")
            self.assertError((st, hdrs, b), 503)
            self.assertRegex(hdrs.get("retry-after", ""), r"^[0-9]+$")
            st, hdrs, b = http_request(h.port, "GET", "/healthz")
            self.assertEqual(st, 200)
            self.assertJsonType(hdrs)
            self.assertEqual(total_rows(), before)
        finally:
            h.stop()

    def test_writer_not_running_pipelined(self):
        # Each 503 lets the next pipelined request in at once, while the
        # sends of the loop turn are still being made: every one is answered
        # 503 now, none waits for --ack-timeout (20 s here).
        h = start_httpd(tmpdir("run-alone"), ["--ack-timeout", "20000"])
        try:
            body = b'{"a":1}'
            one = (b"POST " + webhook_path(WS).encode() + b" HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            # raw_http stops after 3 s without a byte: a request left for
            # the ack timeout would be missing.
            out = raw_http(h.port, one * 5, read_timeout=3)
            self.assertEqual(out.count(b"HTTP/1.1 503 "), 5, out)
        finally:
            h.stop()

    def test_writer_not_running_many_connections_pipelined(self):
        # 40 connections with 3 pipelined requests each, all ready in one
        # loop turn (the server is stopped while they are sent). Envelopes
        # go to ZeroMQ during the turn, 16 at a time between two
        # connections' reads; every send fails, and each 503 lets its
        # connection's next request in while other connections are still to
        # be read. All 120 are answered 503 at once.
        h = start_httpd(tmpdir("run-alone"), ["--ack-timeout", "20000"])
        socks = []
        try:
            body = b'{"a":1}'
            one = (b"POST " + webhook_path(WS).encode() + b" HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            socks = [socket.create_connection(("127.0.0.1", h.port), timeout=scaled(5)) for _ in range(40)]
            wait_until(lambda: re.search(rb"^infonchat_http_connections 4[01]$",
                                         http_request(h.port, "GET", "/metrics")[2], re.M), timeout=10)
            h.kill(signal.SIGSTOP)
            try:
                for s in socks:
                    s.sendall(one * 3)
            finally:
                h.kill(signal.SIGCONT)
            for i, s in enumerate(socks):
                s.settimeout(scaled(3))
                got = b""
                while got.count(b"HTTP/1.1 ") < 3:
                    try:
                        c = s.recv(65536)
                    except socket.timeout:
                        break
                    if not c:
                        break
                    got += c
                self.assertEqual(got.count(b"HTTP/1.1 503 "), 3, (i, got))
            st, _, _ = http_request(h.port, "GET", "/healthz")
            self.assertEqual(st, 200)
        finally:
            for s in socks:
                s.close()
            h.stop()

    def test_writer_gone_fails_pending_at_once(self):
        # Requests the writer took but never answered get 503 as soon as its
        # connection drops, not after --ack-timeout (30 s here).
        p = Pipeline(db, httpd_args=["--ack-timeout", "30000"])
        try:
            self.assertAccepted(p.post(WS, b'{"before":"kill"}'))
            key = new_key("gone")
            p.writer.kill(signal.SIGSTOP)
            result = {}

            def send():
                t0 = time.monotonic()
                result["answer"] = p.post(WS, b'{"during":"kill"}', headers={"X-Webhook-Id": key},
                                          timeout=60)
                result["secs"] = time.monotonic() - t0
            t = threading.Thread(target=send)
            t.start()
            time.sleep(0.5)               # the request waits on the stopped writer
            self.assertTrue(t.is_alive(), "answered while the writer was stopped")
            p.writer.kill(signal.SIGKILL)
            t.join(timeout=scaled(10))
            self.assertFalse(t.is_alive(), "no answer after the writer died")
            self.assertError(result["answer"], 503, "unavailable")
            self.assertLess(result["secs"], scaled(5), "waited for the ack timeout")
            self.assertIn("inbox-writer connection lost", p.httpd.stderr_text())
            # Nothing stored for the key; a retry with a new writer stores it once.
            p.writer.wait(timeout=scaled(5))
            p.start_writer()
            wait_ready(p.port)
            st, _, b = p.post(WS, b'{"during":"retry"}', headers={"X-Webhook-Id": key})
            self.assertEqual(st, 202, b)
            rows = db.query("select id from infonchat.event_inbox where workspace_id = %s "
                            "and dedupe_key = %s", WS, key)
            self.assertEqual(rows, [[json.loads(b)["event_id"]]])
        finally:
            p.stop()

    def test_max_pending(self):
        """--max-pending 300: the 300 waiting requests fill the table of
        waiting requests (grown past its first 256 on the way), the 301st is
        answered 503 at once and stored nowhere, and when the writer resumes
        the 300 are stored and get their 202."""
        n = 300
        p = Pipeline(db, httpd_args=["--max-pending", str(n), "--ack-timeout", "60000"])
        prefix = new_key("pending")
        keys = ["%s-%d" % (prefix, i) for i in range(n + 1)]
        socks = []

        def post(k):
            return raw_request("POST", webhook_path(WS), [("Content-Length", "2"), ("X-Webhook-Id", k),
                                                          ("Connection", "close")], b"{}")
        try:
            p.writer.kill(signal.SIGSTOP)
            try:
                for k in keys[:n]:
                    s = socket.create_connection(("127.0.0.1", p.port), timeout=scaled(5))
                    socks.append(s)
                    s.sendall(post(k))
                wait_until(lambda: metric_value(metrics(p.port)[2], "infonchat_http_in_flight") == n,
                           timeout=10, message="%d requests waiting" % n)
                t0 = time.monotonic()
                resp = parse_response(raw_http(p.port, post(keys[n]), read_timeout=5))
                self.assertLess(time.monotonic() - t0, scaled(2))
                self.assertEqual(len(resp), 1, resp)
                j = self.assertError(resp[0], 503, "unavailable")
                self.assertIn("--max-pending", j["message"])
                self.assertEqual(resp[0][1].get("retry-after"), "1")
            finally:
                p.writer.kill(signal.SIGCONT)
            for s in socks:
                s.settimeout(scaled(30))
                raw = recv_until(s, lambda b: len(parse_response(b)) == 1, scaled(30))
                self.assertAccepted(parse_response(raw)[0])
            self.assertEqual(db.value("select count(*) from infonchat.event_inbox where workspace_id = %s"
                                      " and dedupe_key like %s", WS, prefix + "-%"), str(n))
            self.assertEqual(db.query("select id from infonchat.event_inbox where dedupe_key = %s", keys[n]), [])
            self.assertEqual(metric_value(metrics(p.port)[2], "infonchat_http_in_flight"), 0)
        finally:
            for s in socks:
                s.close()
            p.stop()

    def test_writer_stopped_ack_timeout(self):
        p = Pipeline(db, httpd_args=["--ack-timeout", "500"])
        try:
            self.assertAccepted(p.post(WS, b'{"before":"stop"}'))
            key = new_key("stopped")
            p.writer.kill(signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                st, hdrs, b = p.post(WS, b'{"during":"stop"}', headers={"X-Webhook-Id": key})
                dt = time.monotonic() - t0
                self.assertError((st, hdrs, b), 503, "unavailable")
                self.assertRegex(hdrs.get("retry-after", ""), r"^[0-9]+$")
                self.assertGreaterEqual(dt, 0.45)
                self.assertLess(dt, scaled(3))
                # /readyz notices within a few seconds
                wait_until(lambda: http_request(p.port, "GET", "/readyz")[0] == 503, timeout=6)
            finally:
                p.writer.kill(signal.SIGCONT)
            wait_ready(p.port)
            # The writer may have stored the refused event after all; a
            # retry with the same key finds it (or stores it): one row.
            eid = json.loads(p.post(WS, b'{"during":"retry"}', headers={"X-Webhook-Id": key})[2])["event_id"]
            rows = db.query("select id from infonchat.event_inbox where workspace_id = %s "
                            "and dedupe_key = %s", WS, key)
            self.assertEqual(rows, [[eid]])
        finally:
            p.stop()


def metrics(port):
    st, hdrs, body = http_request(port, "GET", "/metrics")
    return st, hdrs, body.decode("utf-8")


def metric_value(text, name, labels=""):
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return float(m.group(1)) if m else 0.0


SAMPLE_RE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"'
                       r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*\})? [-+]?([0-9.eE+-]+|Inf|NaN)$')


class Health(Checks):
    def test_healthz(self):
        for method in ("GET", "HEAD"):
            st, hdrs, body = http_request(P.port, method, "/healthz")
            self.assertEqual(st, 200)
            self.assertJsonType(hdrs)
            if method == "GET":
                self.assertIsInstance(json.loads(body), dict)

    def test_readyz(self):
        st, hdrs, body = http_request(P.port, "GET", "/readyz")
        self.assertEqual(st, 200, body)
        self.assertJsonType(hdrs)
        self.assertIsInstance(json.loads(body), dict)

    def test_metrics(self):
        st, hdrs, text = metrics(P.port)
        self.assertEqual(st, 200)
        ct = hdrs.get("content-type", "")
        self.assertTrue(ct.startswith("text/plain"), ct)
        self.assertIn("version=0.0.4", ct)
        self.assertTrue(text.endswith("\n"))
        for ln in text.splitlines():
            if ln.startswith("#"):
                self.assertRegex(ln, r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S")
            else:
                self.assertRegex(ln, SAMPLE_RE)
        self.assertIn("# TYPE infonchat_http_requests_total counter", text)
        n202 = metric_value(text, "infonchat_http_requests_total", '{status="202"}')
        n404 = metric_value(text, "infonchat_http_requests_total", '{status="404"}')
        n400 = metric_value(text, "infonchat_http_requests_total", '{status="400"}')
        n411 = metric_value(text, "infonchat_http_requests_total", '{status="411"}')
        self.assertAccepted(P.post(WS, b'{"m":1}'))
        self.assertAccepted(P.post(WS, b'{"m":2}'))
        self.assertEqual(P.post(WS, b'{"m":3}', query="x")[0], 202)
        self.assertEqual(http_request(P.port, "GET", "/nowhere")[0], 404)
        self.assertEqual(P.post(WS, b'[]')[0], 400)
        # answered by the HTTP layer itself: counted too
        self.assertEqual(parse_response(raw_http(P.port, raw_request("POST", webhook_path(WS))))[0][0], 411)
        self.assertEqual(parse_response(raw_http(P.port, raw_request(
            "POST", webhook_path(WS), [("Content-Length", "+2")], b"{}")))[0][0], 400)
        _, _, text = metrics(P.port)
        self.assertEqual(metric_value(text, "infonchat_http_requests_total", '{status="202"}'), n202 + 3)
        self.assertEqual(metric_value(text, "infonchat_http_requests_total", '{status="404"}'), n404 + 1)
        self.assertEqual(metric_value(text, "infonchat_http_requests_total", '{status="400"}'), n400 + 2)
        self.assertEqual(metric_value(text, "infonchat_http_requests_total", '{status="411"}'), n411 + 1)


class Framing(Checks):
    """HTTP hardening in http.c."""

    def assertOnlyError(self, raw, status=400, code=None):
        resp = parse_response(raw)
        self.assertEqual(len(resp), 1, raw)
        self.assertError(resp[0], status, code)
        return resp[0]

    def test_content_length_and_transfer_encoding(self):
        key = new_key("smuggled")
        smuggled = raw_request("POST", webhook_path(WS), [("Content-Length", "2"),
                                                          ("X-Webhook-Id", key)], b"{}")
        for order in ("cl-te", "te-cl"):
            with self.subTest(order):
                hs = [("Content-Length", "5"), ("Transfer-Encoding", "chunked")]
                if order == "te-cl":
                    hs.reverse()
                req = raw_request("POST", webhook_path(WS), hs) + b"0\r\n\r\n" + smuggled
                t0 = time.monotonic()
                raw = raw_http(P.port, req, read_timeout=5)
                # the server closed the connection (raw_http returned at EOF)
                self.assertLess(time.monotonic() - t0, scaled(4.5), "connection not closed")
                _, hdrs, _ = self.assertOnlyError(raw, 400)
                self.assertEqual(hdrs.get("connection", "").lower(), "close")
        time.sleep(0.3)
        self.assertEqual(db.query("select id from infonchat.event_inbox where dedupe_key = %s", key), [])

    def test_bad_framing(self):
        body = b'{"a":1}'
        cases = {
            "two Content-Length": [("Content-Length", "7"), ("Content-Length", "8")],
            "Content-Length +7": [("Content-Length", "+7")],
            "Content-Length -7": [("Content-Length", "-7")],
            "Content-Length 7 7": [("Content-Length", "7 7")],
            "Content-Length 0x7": [("Content-Length", "0x7")],
            "Content-Length list": [("Content-Length", "7, 7")],
            "Transfer-Encoding gzip": [("Transfer-Encoding", "gzip")],
            "Transfer-Encoding gzip, chunked": [("Transfer-Encoding", "gzip, chunked")],
            "two Transfer-Encoding": [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
            "space before colon": [("Content-Length", "7"), "X-Foo : bar"],
            "space before colon in Content-Length": ["Content-Length : 7"],
            "folded header": [("Content-Length", "7"), ("X-Foo", "a"), " b"],
        }
        before = total_rows()
        for name, hs in cases.items():
            with self.subTest(name):
                self.assertOnlyError(raw_http(P.port, raw_request("POST", webhook_path(WS), hs, body)))
        with self.subTest("chunk size 0x7"):
            req = raw_request("POST", webhook_path(WS), [("Transfer-Encoding", "chunked")]) + \
                b"0x7\r\n" + body + b"\r\n0\r\n\r\n"
            self.assertOnlyError(raw_http(P.port, req))
        with self.subTest("chunk size with a space"):
            req = raw_request("POST", webhook_path(WS), [("Transfer-Encoding", "chunked")]) + \
                b" 7\r\n" + body + b"\r\n0\r\n\r\n"
            self.assertOnlyError(raw_http(P.port, req))
        with self.subTest("chunk data without CRLF"):
            req = raw_request("POST", webhook_path(WS), [("Transfer-Encoding", "chunked")]) + \
                b"7\r\n" + body + b"XX0\r\n\r\n"
            self.assertOnlyError(raw_http(P.port, req))
        with self.subTest("HTTP/1.1 without Host"):
            req = raw_request("POST", webhook_path(WS), [("Content-Length", "7")], body, host=False)
            self.assertOnlyError(raw_http(P.port, req))
        with self.subTest("two Host"):
            req = raw_request("POST", webhook_path(WS), [("Host", "b"), ("Content-Length", "7")], body)
            self.assertOnlyError(raw_http(P.port, req))
        with self.subTest("Transfer-Encoding in HTTP/1.0"):
            req = (b"POST " + webhook_path(WS).encode() + b" HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"7\r\n" + body + b"\r\n0\r\n\r\n")
            self.assertOnlyError(raw_http(P.port, req))
        self.assertEqual(total_rows(), before)

    def test_http10_without_host_is_fine(self):
        body = b'{"http":"1.0"}'
        req = (b"POST " + webhook_path(WS).encode() + b" HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        resp = parse_response(raw_http(P.port, req))
        self.assertEqual(len(resp), 1)
        eid = self.assertAccepted(resp[0])
        self.assertEqual(inbox_row(db, eid)["payload"], body.decode())

    def test_keep_alive(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", P.port, timeout=scaled(10))
        try:
            ids = []
            sock = None
            for i in range(3):
                conn.request("POST", webhook_path(WS), body=b'{"ka":%d}' % i)
                r = conn.getresponse()
                b = r.read()
                self.assertEqual(r.status, 202, b)
                self.assertNotEqual((r.getheader("Connection") or "").lower(), "close")
                ids.append(json.loads(b)["event_id"])
                if sock is None:
                    sock = conn.sock
                self.assertIs(conn.sock, sock, "connection was not kept alive")
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertIs(conn.sock, sock)
        finally:
            conn.close()
        for i, eid in enumerate(ids):
            self.assertEqual(inbox_row(db, eid)["payload"], '{"ka":%d}' % i)

    def test_half_close_still_answered(self):
        """A client that shuts down its sending side after its requests
        (printf ... | nc -N) still reads every answer, then EOF."""
        body = b'{"half":"close"}'
        req = raw_request("POST", webhook_path(WS), [("Content-Length", str(len(body)))], body)
        for extra in (b"", raw_request("GET", "/healthz")):
            with self.subTest(pipelined=bool(extra)):
                t0 = time.monotonic()
                raw = raw_http(P.port, req + extra, half_close=True, read_timeout=5)
                self.assertLess(time.monotonic() - t0, scaled(4), "connection not closed after the answers")
                resp = parse_response(raw)
                self.assertEqual([r[0] for r in resp], [202, 200] if extra else [202], raw)
                eid = self.assertAccepted(resp[0])
                self.assertEqual(inbox_row(db, eid)["payload"], body.decode())

    def test_pipelined_requests_answered_in_order(self):
        k1, k2 = new_key("pipe1"), new_key("pipe2")
        r1 = raw_request("POST", webhook_path(WS), [("Content-Length", "8"), ("X-Webhook-Id", k1)], b'{"n":1} ')
        r2 = raw_request("GET", "/healthz")
        r3 = raw_request("POST", webhook_path(WS), [("Content-Length", "7"), ("X-Webhook-Id", k2)], b'{"n":2}')
        r4 = raw_request("GET", "/nowhere", [("Connection", "close")])
        raw = raw_http(P.port, r1 + r2 + r3 + r4, read_timeout=5)
        resp = parse_response(raw)
        self.assertEqual([r[0] for r in resp], [202, 200, 202, 404], raw)
        e1 = self.assertAccepted(resp[0])
        e3 = self.assertAccepted(resp[2])
        self.assertEqual(inbox_row(db, e1)["dedupe_key"], k1)
        self.assertEqual(inbox_row(db, e3)["dedupe_key"], k2)
        self.assertEqual(inbox_row(db, e1)["payload"], '{"n":1}')


class OwnHttpd(Checks):
    """Tests of an ingest-httpd of their own on P's writer, started with
    HTTPD_ARGS."""
    HTTPD_ARGS = []

    @classmethod
    def setUpClass(cls):
        cls.h = start_httpd(P.run_dir, cls.HTTPD_ARGS)
        wait_ready(cls.h.port)

    @classmethod
    def tearDownClass(cls):
        cls.h.stop()


class HeaderLimits431(OwnHttpd):
    """--max-headers and --max-header-size: at the limit a request is
    accepted with every field stored, one over it is 431 headers_too_large
    and stores nothing. The field array grows on demand (16, then doubling
    up to the limit), so 20 fields cross a growth, and a connection that
    grew it serves a smaller request next with no field of the first."""
    HTTPD_ARGS = ["--max-headers", "20", "--max-header-size", "2k"]

    def fields(self, n, key, body, close=False):
        """A POST of exactly n header fields (Host and Content-Length included)."""
        hs = [("Content-Length", str(len(body))), ("X-Webhook-Id", key)]
        if close:
            hs.append(("Connection", "close"))
        hs += [("X-H-%02d" % i, "v%d" % i) for i in range(n - 1 - len(hs))]
        req = raw_request("POST", webhook_path(WS), hs, body)
        self.assertEqual(req.count(b"\r\n") - 2, n, req)
        return req

    def test_at_the_field_limit_then_a_small_request_on_the_same_connection(self):
        k1, k2 = new_key("h20"), new_key("h5")
        big = self.fields(20, k1, b'{"n":20}')
        small = self.fields(5, k2, b'{"n":5}', close=True)
        resp = parse_response(raw_http(self.h.port, big + small, read_timeout=5))
        self.assertEqual([r[0] for r in resp], [202, 202], resp)
        r1 = inbox_row(db, self.assertAccepted(resp[0]))
        r2 = inbox_row(db, self.assertAccepted(resp[1]))
        self.assertEqual((r1["dedupe_key"], r2["dedupe_key"]), (k1, k2))
        self.assertEqual(sorted(k for k in r1["headers"] if k.startswith("x-h-")),
                         ["x-h-%02d" % i for i in range(17)])
        self.assertEqual(r1["headers"]["x-h-16"], "v16")
        self.assertEqual(sorted(k for k in r2["headers"] if k.startswith("x-h-")), ["x-h-00"])

    def test_one_field_over_the_limit(self):
        key = new_key("h21")
        before = total_rows()
        for close in (False, True):
            with self.subTest(close=close):
                resp = parse_response(raw_http(self.h.port, self.fields(21, key, b"{}", close), read_timeout=5))
                self.assertEqual(len(resp), 1, resp)
                self.assertError(resp[0], 431, "headers_too_large")
                self.assertEqual(resp[0][1].get("connection", "").lower(), "close")
        self.assertEqual(total_rows(), before)
        self.assertEqual(db.query("select id from infonchat.event_inbox where dedupe_key = %s", key), [])

    def test_head_over_the_byte_limit(self):
        key = new_key("hbytes")
        before = total_rows()
        for size, status in ((1500, 202), (2100, 431)):
            with self.subTest(size=size):
                hs = [("Content-Length", "2"), ("X-Webhook-Id", key + str(size)), ("Connection", "close")]
                req = raw_request("POST", webhook_path(WS), hs)
                pad = size - len(req) - len("X-Pad: \r\n")
                req = raw_request("POST", webhook_path(WS), hs + [("X-Pad", "p" * pad)]) + b"{}"
                self.assertEqual(len(req), size + 2)
                resp = parse_response(raw_http(self.h.port, req, read_timeout=5))
                self.assertEqual(len(resp), 1, resp)
                if status == 202:
                    self.assertAccepted(resp[0])
                else:
                    self.assertError(resp[0], 431, "headers_too_large")
        self.assertEqual(total_rows(), before + 1)


class Framing408417505(OwnHttpd):
    """The framing answers with no other test: 505 for an HTTP version other
    than 1.0 and 1.1, 417 for an Expect other than 100-continue, 408 for a
    request not complete within --request-timeout (head or body), and the
    silent close of a connection idle past --idle-timeout. None stores
    anything, and each closes its connection."""
    HTTPD_ARGS = ["--request-timeout", "1", "--idle-timeout", "1"]

    def only(self, raw, status, code):
        resp = parse_response(raw)
        self.assertEqual(len(resp), 1, raw)
        self.assertError(resp[0], status, code)
        self.assertEqual(resp[0][1].get("connection", "").lower(), "close")

    def test_505_and_417(self):
        key = new_key("framing")
        before = total_rows()
        for version in ("HTTP/2.0", "HTTP/1.2", "HTTP/0.9"):
            with self.subTest(version):
                req = ("POST %s %s\r\nHost: x\r\nContent-Length: 2\r\nX-Webhook-Id: %s\r\n\r\n{}"
                       % (webhook_path(WS), version, key)).encode()
                self.only(raw_http(P.port, req, read_timeout=5), 505, "http_version_not_supported")
        for expect in ("200-ok", "100-continue-please", ""):
            with self.subTest(expect=expect):
                req = raw_request("POST", webhook_path(WS), [("Content-Length", "2"), ("X-Webhook-Id", key),
                                                             ("Expect", expect)], b"{}")
                self.only(raw_http(P.port, req, read_timeout=5), 417, "expectation_failed")
        self.assertEqual(total_rows(), before)

    def test_408_incomplete_head_or_body(self):
        key = new_key("slow")
        before = total_rows()
        head = raw_request("POST", webhook_path(WS), [("Content-Length", "20"), ("X-Webhook-Id", key)])
        for name, part in (("head", head[:40]), ("body", head + b'{"a":')):
            with self.subTest(name):
                s = socket.create_connection(("127.0.0.1", self.h.port), timeout=scaled(5))
                try:
                    t0 = time.monotonic()
                    s.sendall(part)
                    raw = recv_until(s, lambda b: False, 5)     # until the server closes
                    dt = time.monotonic() - t0
                finally:
                    s.close()
                self.only(raw, 408, "request_timeout")
                self.assertGreaterEqual(dt, 0.9)
                self.assertLess(dt, scaled(3))
        self.assertEqual(total_rows(), before)

    def test_idle_connection_closed_without_a_reply(self):
        s = socket.create_connection(("127.0.0.1", self.h.port), timeout=scaled(5))
        try:
            t0 = time.monotonic()
            raw = recv_until(s, lambda b: False, 5)
            dt = time.monotonic() - t0
        finally:
            s.close()
        self.assertEqual(raw, b"")
        self.assertGreaterEqual(dt, 0.9)
        self.assertLess(dt, scaled(3))


if __name__ == "__main__":
    unittest.main()
