"""The derived fields of an inbox row (DESIGN.md "Fallbacks", "Role",
envelope "headers") and the payload kept byte for byte, checked in the
stored event_inbox row: event_type, role, dedupe_key, source_identifier,
source_kind, workspace_id, headers (jsonb) and payload::text."""

import json
import unittest
import uuid

from harness import Cluster, make_workspace
from ingest_helpers import (UUID_RE, Pipeline, expected_payload, inbox_row, new_key,
                            post_with_header_list, webhook_path)

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


class Base(unittest.TestCase):
    def store(self, body, query=None, headers=None, ws=None, accepted=True):
        """POST, expect 202, return the stored row."""
        st, hdrs, b = P.post(ws or WS, body, query=query, headers=headers)
        self.assertEqual(st, 202, (b, P.logs()[-2000:]))
        self.assertEqual(hdrs.get("content-type", "").split(";")[0], "application/json")
        j = json.loads(b)
        self.assertIs(j["accepted"], accepted, j)
        self.assertRegex(j["event_id"], UUID_RE)
        row = inbox_row(db, j["event_id"])
        self.assertIsNotNone(row, "202 without its row")
        self.assertEqual(row["id"], j["event_id"])
        return row

    def check(self, row, **want):
        got = {k: row[k] for k in want}
        self.assertEqual(got, want)


class EventType(Base):
    CASES = [
        # (name, query, body, event_type, role slug)
        ("query wins", "event_type=Query.Type", '{"event":"e","type":"t","action":"a"}',
         "Query.Type", "query_type"),
        ("payload event", None, '{"event":"charge.refunded","type":"t","action":"a"}',
         "charge.refunded", "charge_refunded"),
        ("type", None, '{"type":"payment.succeeded","action":"a"}',
         "payment.succeeded", "payment_succeeded"),
        ("action", None, '{"action":"opened","id":1}', "opened", "opened"),
        ("received", None, '{"id":"x","data":{"event":"inner","type":"inner"}}',
         "received", "received"),
        ("empty object", None, '{}', "received", "received"),
        ("empty event skipped", None, '{"event":"","type":"t"}', "t", "t"),
        ("number skipped", None, '{"event":1,"type":2.5,"action":"a"}', "a", "a"),
        ("null, bool, object, array skipped", None,
         '{"event":null,"type":true,"action":{"x":"y"},"id":"i"}', "received", "received"),
        ("array skipped", None, '{"event":["e"],"type":"t"}', "t", "t"),
        ("\\u0000 string skipped", None, '{"event":"a\\u0000b","type":"T"}', "T", "t"),
        ("only \\u0000 skipped everywhere", None,
         '{"event":"\\u0000","type":"x\\u0000","action":"\\u0000y"}', "received", "received"),
        ("last duplicate wins", None, '{"event":"first","event":"second"}', "second", "second"),
        ("last duplicate wins, non-string", None,
         '{"type":"t","event":"x","event":5}', "t", "t"),
        ("last duplicate wins, empty", None, '{"event":"x","type":"t","event":""}', "t", "t"),
        ("last duplicate wins over earlier keys", None,
         '{"action":"a1","type":"t1","action":"a2","type":null}', "a2", "a2"),
        ("escaped key", None, '{"\\u0065vent":"esc"}', "esc", "esc"),
        ("escaped value decoded", None, '{"event":"caf\\u00e9 \\/ \\"q\\""}',
         'caf\u00e9 / "q"', "caf_q"),
        ("surrogate pair decoded", None, '{"type":"\\ud83d\\ude00 smile"}',
         "\U0001F600 smile", "smile"),
        ("whitespace-only value counts", None, '{"event":" ","type":"t"}', " ", "received"),
        ("empty query counts as absent", "event_type=", '{"event":"p"}', "p", "p"),
        ("query percent-decoded", "event_type=a+b%2Fc%C3%A9", '{"event":"p"}',
         "a b/c\u00e9", "a_b_c"),
        ("other query ignored", "type=q&event=q", '{"type":"p"}', "p", "p"),
    ]

    def test_event_type_fallbacks(self):
        for name, query, body, et, slug in self.CASES:
            with self.subTest(name):
                row = self.store(body, query=query)
                self.check(row, event_type=et, role="webhook.generic." + slug,
                           payload=body, source_kind="webhook.generic")


class RoleSlug(Base):
    CASES = [
        ("payment.succeeded", "payment_succeeded"),
        ("Payment.Succeeded", "payment_succeeded"),
        ("issue_comment.created", "issue_comment_created"),
        ("--Hello,  World!!--", "hello_world"),
        ("A..B__C", "a_b_c"),
        ("v2/Order Created", "v2_order_created"),
        ("...", "received"),
        ("___", "received"),
        ("caf\u00e9", "caf"),
        ("\u00c4\u00d6\u00dc", "received"),
        ("x\u00e9y", "x_y"),
        ("123", "123"),
    ]

    def test_role_slug(self):
        for et, slug in self.CASES:
            with self.subTest(event_type=et):
                row = self.store(json.dumps({"event": et}, ensure_ascii=False).encode("utf-8"),
                                 query="source=Shop")
                self.check(row, event_type=et, role="webhook.shop." + slug,
                           source_kind="webhook.shop")


class Source(Base):
    def test_source_lower_cased(self):
        row = self.store('{"type":"push"}', query="source=GitHub")
        self.check(row, source_kind="webhook.github", role="webhook.github.push",
                   source_identifier="github:" + WS)

    def test_default_source(self):
        row = self.store('{"type":"push"}')
        self.check(row, source_kind="webhook.generic", role="webhook.generic.push",
                   source_identifier="generic:" + WS)

    def test_workspace_id_lower_cased(self):
        row = self.store('{"w":1}', ws=WS.upper())
        self.check(row, workspace_id=WS, source_identifier="generic:" + WS)
        # dedupe is per workspace whatever the case it was sent in
        key = new_key()
        r1 = self.store('{"w":2}', ws=WS.upper(), headers={"X-Webhook-Id": key})
        r2 = self.store('{"w":3}', ws=WS, headers={"X-Webhook-Id": key}, accepted=False)
        self.assertEqual(r1["id"], r2["id"])


class DedupeKey(Base):
    def test_precedence(self):
        q, w, r = new_key("q"), new_key("w"), new_key("r")
        cases = [
            ("query", "dedupe_key=" + q, {"X-Webhook-Id": w, "X-Request-Id": r}, q),
            ("x-webhook-id", None, {"X-Webhook-Id": w, "X-Request-Id": r}, w),
            ("x-request-id", None, {"X-Request-Id": r}, r),
            ("empty query", "dedupe_key=", {"X-Request-Id": r + "b"}, r + "b"),
            ("empty x-webhook-id", None, {"X-Webhook-Id": "", "X-Request-Id": r + "c"}, r + "c"),
            ("header name case", None, {"X-WEBHOOK-ID": w + "d"}, w + "d"),
            ("query decoded", "dedupe_key=a%20b+c%2B" + q, {}, "a b c+" + q),
        ]
        for name, query, headers, want in cases:
            with self.subTest(name):
                row = self.store('{"id":"payload-id"}', query=query, headers=headers)
                # the dedupe key also becomes the source_identifier
                self.check(row, dedupe_key=want, source_identifier=want)

    def test_none_is_null_and_never_collides(self):
        body = b'{"type":"no.key"}'
        r1 = self.store(body)
        r2 = self.store(body)
        self.assertIsNone(r1["dedupe_key"])
        self.assertIsNone(r2["dedupe_key"])
        self.assertNotEqual(r1["id"], r2["id"])
        self.assertEqual(db.value("select count(*) from infonchat.event_inbox where id in (%s, %s)",
                                  r1["id"], r2["id"]), "2")

    def test_duplicate_answers_the_original(self):
        key = new_key()
        r1 = self.store('{"n":1}', headers={"X-Request-Id": key})
        r2 = self.store('{"n":2}', query="dedupe_key=" + key, accepted=False)
        r3 = self.store('{"n":3}', headers={"X-Webhook-Id": key}, accepted=False)
        self.assertEqual(r1["id"], r2["id"])
        self.assertEqual(r1["id"], r3["id"])
        self.assertEqual(r1["payload"], '{"n":1}')
        self.assertEqual(db.value("select count(*) from infonchat.event_inbox where dedupe_key = %s", key), "1")


class SourceIdentifier(Base):
    def test_precedence(self):
        k = new_key()
        cases = [
            ("query", "source_identifier=si-1", {"X-Webhook-Id": k + "a"}, '{"id":"p"}', "si-1"),
            ("query decoded", "source_identifier=a%2Fb+c", {}, '{"id":"p"}', "a/b c"),
            ("dedupe key", None, {"X-Webhook-Id": k + "b"}, '{"id":"p"}', k + "b"),
            ("payload id string", None, {}, '{"id":"evt_9"}', "evt_9"),
            ("payload id escaped", None, {}, '{"id":"\\u0065vt\\/1"}', "evt/1"),
            ("payload id big integer", None, {}, '{"id":12345678901234567890}', "12345678901234567890"),
            ("payload id decimal", None, {}, '{"id":1.50}', "1.50"),
            ("payload id exponent", None, {}, '{"id":-0.0e+5}', "-0.0e+5"),
            ("payload id huge", None, {}, '{"id":1e999}', "1e999"),
            ("last id wins", None, {}, '{"id":"a","id":7}', "7"),
            ("last id wins, empty", None, {}, '{"id":"a","id":""}', "generic:" + WS),
            ("empty query", "source_identifier=", {}, '{"id":"p2"}', "p2"),
            ("empty id", None, {}, '{"id":""}', "generic:" + WS),
            ("null id", None, {}, '{"id":null}', "generic:" + WS),
            ("bool id", None, {}, '{"id":true}', "generic:" + WS),
            ("object id", None, {}, '{"id":{"id":"x"}}', "generic:" + WS),
            ("array id", None, {}, '{"id":["x"]}', "generic:" + WS),
            ("\\u0000 id", None, {}, '{"id":"a\\u0000"}', "generic:" + WS),
            ("nested id does not count", None, {}, '{"data":{"id":"x"}}', "generic:" + WS),
            ("default with source", "source=Stripe", {}, '{}', "stripe:" + WS),
        ]
        for name, query, headers, body, want in cases:
            with self.subTest(name):
                row = self.store(body, query=query, headers=headers)
                self.check(row, source_identifier=want, payload=body)


class Headers(Base):
    def test_headers_column(self):
        secret = "Bearer s3cr3t-" + uuid.uuid4().hex
        hl = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("X-Custom", "a"),
            ("x-custom", "b"),
            ("X-CUSTOM", "c, d"),
            ("Authorization", secret),
            ("authorization", secret + "2"),
            ("Proxy-Authorization", "Basic " + secret),
            ("Cookie", "session=" + secret),
            ("COOKIE", "other=1"),
            ("X-Empty", ""),
            ("X-Quote", 'say "hi" \\ back'),
            ("X-Tab", "a\tb"),
            ("X-Utf8", "caf\u00e9".encode("utf-8")),
            ("X-Latin1", b"caf\xe9"),
            ("X-Webhook-Id", new_key()),
        ]
        st, hdrs, b = post_with_header_list(P.port, webhook_path(WS), b'{"h":1}', hl)
        self.assertEqual(st, 202, b)
        row = inbox_row(db, json.loads(b)["event_id"])
        h = row["headers"]
        self.assertEqual(set(h), {k.lower() for k in h}, "names not lower-cased")
        self.assertEqual(h["content-type"], "application/json; charset=utf-8")
        self.assertEqual(h["x-custom"], "a, b, c, d")
        self.assertEqual(h["authorization"], "[redacted]")
        self.assertEqual(h["proxy-authorization"], "[redacted]")
        self.assertEqual(h["cookie"], "[redacted]")
        self.assertEqual(h["x-empty"], "")
        self.assertEqual(h["x-quote"], 'say "hi" \\ back')
        self.assertEqual(h["x-tab"], "a\tb")
        self.assertEqual(h["x-utf8"], "caf\u00e9")
        self.assertIsInstance(h["x-latin1"], str)
        self.assertTrue(h["x-latin1"].startswith("caf"))
        self.assertEqual(h["host"], "127.0.0.1:%d" % P.port)
        self.assertEqual(h["content-length"], "7")
        self.assertEqual(h["x-webhook-id"], row["dedupe_key"])
        self.assertNotIn("s3cr3t", json.dumps(h))
        self.assertNotIn("session=", json.dumps(h))
        self.assertEqual(row["payload"], '{"h":1}')


class PayloadVerbatim(Base):
    BODIES = [
        ("big and precise numbers",
         b'{"big":12345678901234567890,"neg":-98765432109876543210987,"dec":1.10,'
         b'"huge":1e999,"tiny":1e-999,"negzero":-0.0,"exp":1E+2,"e":0.5e-3,"max":1.7976931348623157e309}'),
        ("key order", b'{"z":1,"a":2,"m":3,"b":{"y":1,"x":2}}'),
        ("duplicate keys", b'{"a":1,"a":2,"a":{"a":3,"a":"4"},"b":[],"a":null}'),
        ("escapes", b'{"e":"\\u00e9","E":"\\u00E9","s":"\\/","q":"\\"","bs":"\\\\","nl":"\\n",'
                    b'"ctl":"\\u001f\\b\\f\\r\\t","pair":"\\uD83D\\uDE00","nul":"x\\u0000y"}'),
        ("raw UTF-8", '{"raw":"h\u00e9llo \u4e16\u754c \U0001F600","k\u00e9y":1}'.encode("utf-8")),
        ("whitespace between tokens", b'{\r\n\t"a" :\t1 ,\n  "b"\r:[ 1 ,\t2 ]\r\n}'),
        ("surrounding whitespace", b' \r\n\t{"a":"b"}\r\n\t '),
        ("spaces inside strings kept", b'{"a":"  two  spaces  ","b\t":1}'.replace(b"\t", b" ")),
        ("empties", b'{"a":{},"b":[],"c":[{}],"d":"","":""}'),
        ("literals", b'{"t":true,"f":false,"n":null,"arr":[true,false,null,0,-1,"x"]}'),
        ("long string", b'{"long":"' + b"x" * 200000 + b'"}'),
    ]

    def test_payload_text_byte_for_byte(self):
        for name, body in self.BODIES:
            with self.subTest(name):
                row = self.store(body)
                self.assertEqual(row["payload"], expected_payload(body))

    def test_expected_payload_rule(self):
        # the rule itself, on a case where it matters
        self.assertEqual(expected_payload(b' {\n"a"\t:\r1}\n'), '{ "a" : 1}')


if __name__ == "__main__":
    unittest.main()
