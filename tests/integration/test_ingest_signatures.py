"""Webhook signature verification in ingest-httpd (DESIGN.md "Signature
verification", issue 6): every scheme valid / wrong key / tampered body /
missing / stale, several signatures in one header, rotation without a
restart, require_signature, the provider profiles (github, stripe, shopify,
Standard Webhooks, slack url_verification), the per-workspace rate limit,
and the last good copy of the secrets kept while the database is down."""

import base64
import hashlib
import hmac
import json
import re
import signal
import time
import unittest
import uuid

from harness import Cluster, Stage, free_port, http_request, make_workspace, scaled, wait_until
from ingest_helpers import UUID_RE, Pipeline, inbox_count, inbox_row, new_key, run_cli

db = None
P = None
WS = None          # secrets for every scheme, one source each
WS_OTHER = None    # no secrets: today's behaviour
WS_REQ = None      # require_signature, a secret for "github" only

SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STRIPE_SECRET = "whsec_stripe_" + "s3cr3t"
GH_SECRET = "It's a Secret to Everybody"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
HMAC_SECRET = "plain-hmac-secret"


def mac(key, data):
    return hmac.new(key, data, hashlib.sha256)


def sw_headers(body, secret=SW_SECRET, msg_id=None, ts=None, extra_sigs=()):
    msg_id = msg_id or "msg_" + uuid.uuid4().hex
    ts = str(int(time.time()) if ts is None else ts)
    key = base64.b64decode(secret[len("whsec_"):])
    sig = base64.b64encode(mac(key, ("%s.%s." % (msg_id, ts)).encode() + body).digest()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": ts,
            "webhook-signature": " ".join(list(extra_sigs) + ["v1," + sig])}


def stripe_headers(body, secret=STRIPE_SECRET, ts=None, extra=()):
    ts = str(int(time.time()) if ts is None else ts)
    sig = mac(secret.encode(), ts.encode() + b"." + body).hexdigest()
    parts = ["t=" + ts] + ["v1=" + e for e in extra] + ["v1=" + sig]
    return {"Stripe-Signature": ",".join(parts)}


def github_headers(body, secret=GH_SECRET):
    return {"X-Hub-Signature-256": "sha256=" + mac(secret.encode(), body).hexdigest()}


def slack_headers(body, secret=SLACK_SECRET, ts=None):
    ts = str(int(time.time()) if ts is None else ts)
    sig = mac(secret.encode(), b"v0:" + ts.encode() + b":" + body).hexdigest()
    return {"X-Slack-Signature": "v0=" + sig, "X-Slack-Request-Timestamp": ts}


def hmac_headers(body, secret=HMAC_SECRET, prefix=""):
    return {"X-Signature": prefix + mac(secret.encode(), body).hexdigest()}


# scheme -> (source, signer(body, **kw), wrong-key kwargs, timestamped)
SCHEMES = {
    "standard-webhooks": ("svix", sw_headers, {"secret": "whsec_" + base64.b64encode(b"x" * 24).decode()}, True),
    "stripe": ("stripe", stripe_headers, {"secret": "whsec_other"}, True),
    "github": ("github", github_headers, {"secret": "not it"}, False),
    "slack": ("slack", slack_headers, {"secret": "wrong"}, True),
    "hmac-sha256": ("acme", hmac_headers, {"secret": "wrong"}, False),
}
SECRETS = {"standard-webhooks": SW_SECRET, "stripe": STRIPE_SECRET, "github": GH_SECRET,
           "slack": SLACK_SECRET, "hmac-sha256": HMAC_SECRET}


def add_secret(ws, source, scheme, secret):
    db.execute("insert into infonchat.webhook_secrets(workspace_id, source, scheme, secret) "
               "values (%s, %s, %s, %s)", ws, source, scheme, secret)


def setUpModule():
    global db, P, WS, WS_OTHER, WS_REQ
    db = Cluster()
    WS = make_workspace(db)
    WS_OTHER = make_workspace(db)
    WS_REQ = make_workspace(db, require_signature=True)
    for scheme, (source, _, _, _) in SCHEMES.items():
        add_secret(WS, source, scheme, SECRETS[scheme])
    add_secret(WS_REQ, "github", "github", GH_SECRET)
    P = Pipeline(db, httpd_args=["--db", db.conninfo])


def tearDownModule():
    rc = None
    if P:
        rc = P.httpd.stop()
        err = P.httpd.stderr_text()
        P.stop()
    if db:
        db.stop()
    # a clean exit: no sanitizer report (INFONCHAT_BIN=build/san/bin), no leak
    if P and (rc != 0 or "Sanitizer" in err):
        raise AssertionError("ingest-httpd exited %s:\n%s" % (rc, err[-3000:]))


class Base(unittest.TestCase):
    def post(self, ws, body, source, headers=None, query=None):
        q = "source=" + source + ("&" + query if query else "")
        return P.post(ws, body, query=q, headers=headers)

    def accepted(self, ws, body, source, headers=None, query=None):
        st, _, b = self.post(ws, body, source, headers, query)
        self.assertEqual(st, 202, (b, P.logs()[-3000:]))
        j = json.loads(b)
        self.assertRegex(j["event_id"], UUID_RE)
        return j

    def refused(self, ws, body, source, headers, code, status=401):
        before = inbox_count(db, ws)
        st, hdrs, b = self.post(ws, body, source, headers)
        self.assertEqual(st, status, b)
        self.assertEqual(hdrs.get("content-type", "").split(";")[0], "application/json")
        self.assertEqual(json.loads(b)["error"], code, b)
        self.assertEqual(inbox_count(db, ws), before, "stored on %d" % status)


class Schemes(Base):
    def body(self):
        return json.dumps({"id": new_key("evt"), "type": "t.x"}).encode()

    def test_valid(self):
        for scheme, (source, sign, _, _) in SCHEMES.items():
            with self.subTest(scheme=scheme):
                b = self.body()
                j = self.accepted(WS, b, source, sign(b))
                self.assertTrue(j["accepted"])
                row = inbox_row(db, j["event_id"])
                self.assertEqual(row["source_kind"], "webhook." + source)

    def test_wrong_key(self):
        for scheme, (source, sign, wrong, _) in SCHEMES.items():
            with self.subTest(scheme=scheme):
                b = self.body()
                self.refused(WS, b, source, sign(b, **wrong), "bad_signature")

    def test_tampered_body(self):
        for scheme, (source, sign, _, _) in SCHEMES.items():
            with self.subTest(scheme=scheme):
                b = self.body()
                h = sign(b)
                self.refused(WS, b.replace(b"t.x", b"t.y"), source, h, "bad_signature")
                # one byte of whitespace is tampering too: the raw bytes count
                self.refused(WS, b + b" ", source, h, "bad_signature")

    def test_missing(self):
        for scheme, (source, _, _, _) in SCHEMES.items():
            with self.subTest(scheme=scheme):
                self.refused(WS, self.body(), source, {}, "missing_signature")

    def test_stale(self):
        for scheme, (source, sign, _, timestamped) in SCHEMES.items():
            if not timestamped:
                continue
            for delta in (-301 - 5, 301 + 5):
                with self.subTest(scheme=scheme, delta=delta):
                    b = self.body()
                    self.refused(WS, b, source, sign(b, ts=int(time.time()) + delta),
                                 "stale_timestamp")
            with self.subTest(scheme=scheme, delta=-200):
                b = self.body()
                self.accepted(WS, b, source, sign(b, ts=int(time.time()) - 200))

    def test_several_signatures(self):
        b = self.body()
        junk = base64.b64encode(b"\0" * 32).decode()
        self.accepted(WS, b, "svix", sw_headers(b, extra_sigs=["v1," + junk, "v1a,abc"]))
        b = self.body()
        self.accepted(WS, b, "stripe", stripe_headers(b, extra=["0" * 64, "f" * 64]))
        b = self.body()
        h = stripe_headers(b, extra=["0" * 64])
        h["Stripe-Signature"] = re.sub(r",v1=[0-9a-f]{64}$", ",v1=" + "1" * 64, h["Stripe-Signature"])
        self.refused(WS, b, "stripe", h, "bad_signature")

    def test_hmac_prefix_forms(self):
        b = self.body()
        self.accepted(WS, b, "acme", hmac_headers(b, prefix="sha256="))

    def test_standard_webhooks_dedupe(self):
        b = self.body()
        h = sw_headers(b, msg_id="msg_" + uuid.uuid4().hex)
        j1 = self.accepted(WS, b, "svix", h)
        j2 = self.accepted(WS, b, "svix", h)
        self.assertTrue(j1["accepted"])
        self.assertFalse(j2["accepted"])
        self.assertEqual(j1["event_id"], j2["event_id"])
        self.assertEqual(inbox_row(db, j1["event_id"])["dedupe_key"], h["webhook-id"])

    def test_webhook_id_is_not_a_generic_rule(self):
        # generic and unknown sources keep DESIGN.md's fallbacks exactly:
        # a webhook-id header alone names no dedupe key there
        for source in ("generic", "acme-unsigned"):
            j = self.accepted(WS_OTHER, b'{"a":1}', source, {"webhook-id": "msg_" + uuid.uuid4().hex})
            self.assertIsNone(inbox_row(db, j["event_id"])["dedupe_key"], source)
        # source standard-webhooks takes it even unsigned
        mid = "msg_" + uuid.uuid4().hex
        j = self.accepted(WS_OTHER, b'{"a":1}', "standard-webhooks", {"webhook-id": mid})
        self.assertEqual(inbox_row(db, j["event_id"])["dedupe_key"], mid)

    def test_unsigned_elsewhere(self):
        # a source without a secret, and a workspace without secrets: as today
        self.accepted(WS, b'{"a":1}', "other")
        self.accepted(WS_OTHER, b'{"a":1}', "github")

    def test_order_401_before_400(self):
        self.refused(WS, b"not json", "github", {}, "missing_signature")
        st, _, b = self.post(WS, b"not json", "github", github_headers(b"not json"))
        self.assertEqual(st, 400, b)
        # 401 comes before 404: an unknown workspace has no secrets, so 404
        st, _, b = self.post(str(uuid.uuid4()), b"{}", "github", {})
        self.assertEqual(st, 404, b)


class RequireSignature(Base):
    def test_unsigned_source(self):
        self.refused(WS_REQ, b'{"a":1}', "stripe", {}, "unsigned_source")
        self.refused(WS_REQ, b'{"a":1}', "generic", {}, "unsigned_source")
        self.refused(WS_REQ, b'{"a":1}', "github", {}, "missing_signature")
        b = b'{"a":2}'
        self.accepted(WS_REQ, b, "github", github_headers(b))


class Rotation(Base):
    def test_rotation_without_restart(self):
        ws = make_workspace(db)
        old, new = "rot-old-" + uuid.uuid4().hex, "rot-new-" + uuid.uuid4().hex
        b = b'{"r":1}'
        # no secret yet: accepted unsigned; then the first secret applies
        self.accepted(ws, b, "github")
        add_secret(ws, "github", "github", old)
        t0 = time.monotonic()
        wait_until(lambda: self.post(ws, b, "github")[0] == 401, timeout=6,
                   message="a new secret did not apply within 6 s")
        self.assertLess(time.monotonic() - t0, scaled(6))
        self.accepted(ws, b, "github", github_headers(b, old))
        # both active at once
        add_secret(ws, "github", "github", new)
        wait_until(lambda: self.post(ws, b, "github", github_headers(b, new))[0] == 202,
                   timeout=6, message="the second secret did not apply within 6 s")
        self.accepted(ws, b, "github", github_headers(b, old))
        # the old one retired
        db.execute("delete from infonchat.webhook_secrets where workspace_id = %s and secret = %s",
                   ws, old)
        wait_until(lambda: self.post(ws, b, "github", github_headers(b, old))[0] == 401,
                   timeout=6, message="a deleted secret still verified after 6 s")
        self.accepted(ws, b, "github", github_headers(b, new))
        self.refused(ws, b, "github", github_headers(b, old), "bad_signature")

    def test_sighup_refreshes(self):
        ws = make_workspace(db)
        add_secret(ws, "acme", "hmac-sha256", "hup-secret")
        P.httpd.kill(signal.SIGHUP)
        wait_until(lambda: self.post(ws, b"{}", "acme")[0] == 401, timeout=3)
        self.assertTrue(P.httpd.running())


class Profiles(Base):
    def test_github(self):
        b = json.dumps({"action": "opened", "number": 1}).encode()
        delivery = str(uuid.uuid4())
        h = dict(github_headers(b), **{"X-GitHub-Event": "pull_request",
                                       "X-GitHub-Delivery": delivery})
        j = self.accepted(WS, b, "github", h)
        row = inbox_row(db, j["event_id"])
        self.assertEqual(row["event_type"], "pull_request.opened")
        self.assertEqual(row["role"], "webhook.github.pull_request_opened")
        self.assertEqual(row["dedupe_key"], delivery)
        j2 = self.accepted(WS, b, "github", h)
        self.assertFalse(j2["accepted"])
        # no action: the event name alone
        b = b'{"zen":"Keep it logically awesome.","hook_id":1}'
        h = dict(github_headers(b), **{"X-GitHub-Event": "ping",
                                       "X-GitHub-Delivery": str(uuid.uuid4())})
        row = inbox_row(db, self.accepted(WS, b, "github", h)["event_id"])
        self.assertEqual(row["event_type"], "ping")
        # explicit query parameters still win
        h["X-GitHub-Delivery"] = str(uuid.uuid4())
        row = inbox_row(db, self.accepted(WS, b, "github", h, query="event_type=mine")["event_id"])
        self.assertEqual(row["event_type"], "mine")

    def test_github_headers_ignored_for_generic(self):
        b = b'{"action":"opened"}'
        h = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4())}
        row = inbox_row(db, self.accepted(WS_OTHER, b, "generic", h)["event_id"])
        self.assertEqual(row["event_type"], "opened")
        self.assertIsNone(row["dedupe_key"])

    def test_stripe(self):
        evt = new_key("evt")
        b = json.dumps({"id": evt, "type": "payment_intent.succeeded"}).encode()
        j = self.accepted(WS, b, "stripe", stripe_headers(b))
        row = inbox_row(db, j["event_id"])
        self.assertEqual((row["dedupe_key"], row["event_type"]), (evt, "payment_intent.succeeded"))
        j2 = self.accepted(WS, b, "stripe", stripe_headers(b))
        self.assertFalse(j2["accepted"])
        self.assertEqual(j2["event_id"], j["event_id"])

    def test_shopify(self):
        wid = str(uuid.uuid4())
        h = {"X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": wid}
        row = inbox_row(db, self.accepted(WS_OTHER, b'{"id":820982911946154508}', "shopify", h)["event_id"])
        self.assertEqual((row["event_type"], row["role"], row["dedupe_key"]),
                         ("orders/create", "webhook.shopify.orders_create", wid))

    def test_slack_challenge(self):
        ch = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
        b = json.dumps({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": ch,
                        "type": "url_verification"}).encode()
        before = inbox_count(db, WS)
        self.refused(WS, b, "slack", {}, "missing_signature")
        st, hdrs, body = self.post(WS, b, "slack", slack_headers(b))
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs.get("content-type", "").split(";")[0], "application/json")
        self.assertEqual(json.loads(body), {"challenge": ch})
        self.assertEqual(inbox_count(db, WS), before)
        # an ordinary Slack event is stored
        b = b'{"type":"event_callback","event_id":"Ev1"}'
        self.accepted(WS, b, "slack", slack_headers(b))


class RateLimit(unittest.TestCase):
    def test_429(self):
        R = Pipeline(db, httpd_args=["--rate-limit", "0.5", "--rate-burst", "2"])
        try:
            ws, ws2 = make_workspace(db), make_workspace(db)
            got = [R.post(ws, b'{"n":%d}' % i)[0] for i in range(2)]
            self.assertEqual(got, [202, 202])
            st, hdrs, b = R.post(ws, b'{"n":3}')
            self.assertEqual(st, 429, b)
            self.assertEqual(json.loads(b)["error"], "rate_limited")
            self.assertGreaterEqual(int(hdrs["retry-after"]), 1)
            self.assertLessEqual(int(hdrs["retry-after"]), 2)
            self.assertEqual(inbox_count(db, ws), 2)
            # another workspace has its own bucket
            self.assertEqual(R.post(ws2, b'{}')[0], 202)
            st, _, m = http_request(R.port, "GET", "/metrics")
            m = m.decode()
            self.assertIn('infonchat_http_errors_total{code="rate_limited"} 1', m)
            self.assertIn("infonchat_rate_limited_total 1", m)
            # a token comes back after 1/rate seconds
            time.sleep(2.1)
            self.assertEqual(R.post(ws, b'{"n":4}')[0], 202)
        finally:
            rc = R.httpd.stop()
            R.stop()
        self.assertEqual(rc, 0, R.httpd.stderr_text()[-3000:])

    def test_off_by_default(self):
        ws = make_workspace(db)
        for i in range(30):
            self.assertEqual(P.post(ws, b'{"i":%d}' % i)[0], 202)


class Cli(unittest.TestCase):
    ENV = {"INFONCHAT_RUN_DIR": None, "INFONCHAT_DB": None}

    def test_usage_errors(self):
        for args in (["--rate-limit", "0"], ["--rate-limit", "abc"], ["--rate-limit", "-1"],
                     ["--rate-limit", "2000000"], ["--rate-burst", "5"],
                     ["--rate-limit", "1", "--rate-burst", "0"], ["--db"]):
            with self.subTest(args=args):
                p = run_cli("ingest-httpd", ["--out", "-"] + args, env=self.ENV)
                self.assertEqual(p.returncode, 64, p.stderr)
                self.assertEqual(len(p.stderr.decode().strip().splitlines()), 1, p.stderr)

    def test_help_lists_new_options(self):
        p = run_cli("ingest-httpd", ["--help"], env=self.ENV)
        self.assertEqual(p.returncode, 0)
        for opt in ("--db", "--rate-limit", "--rate-burst"):
            self.assertIn(opt, p.stdout.decode())

    def test_warns_without_db(self):
        port = free_port()
        h = Stage("ingest-httpd", ["--listen", "127.0.0.1:%d" % port, "--out", "-"],
                  env={"INFONCHAT_DB": ""})
        try:
            self.assertEqual(http_request(port, "GET", "/readyz")[0], 200)
        finally:
            self.assertEqual(h.stop(), 0)
        self.assertIn("signatures are NOT verified", h.stderr_text())


class ZDatabaseDown(Base):
    """Last in the module: it stops the server."""

    def test_keeps_last_good_copy(self):
        port = free_port()
        h = Stage("ingest-httpd", ["--listen", "127.0.0.1:%d" % port, "--out", "-",
                                   "--db", db.conninfo])
        try:
            def post(body, headers):
                return http_request(port, "POST", "/api/v1/webhooks/generic/%s?source=github" % WS,
                                    body, headers=headers)[0]
            b = b'{"x":1}'
            self.assertEqual(post(b, github_headers(b)), 202)
            db.stop_server()
            try:
                time.sleep(scaled(3))
                self.assertEqual(post(b, github_headers(b)), 202)
                self.assertEqual(post(b, {}), 401)
                self.assertIn("secrets refresh failed", h.stderr_text())
                st, _, m = http_request(port, "GET", "/readyz")
                self.assertEqual(st, 200)
            finally:
                db.start_server()
            wait_until(lambda: "secrets loaded" in h.stderr_text().split("secrets refresh failed")[-1],
                       timeout=10)
        finally:
            rc = h.stop()
        self.assertEqual(rc, 0, h.stderr_text()[-3000:])
        self.assertNotIn("Sanitizer", h.stderr_text())


if __name__ == "__main__":
    unittest.main()
