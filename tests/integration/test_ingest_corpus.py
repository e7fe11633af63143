"""Every file of JSONTestSuite's test_parsing (tests/data/jsontestsuite)
posted as a webhook body: the y_object* files are JSON objects and are
stored with payload::text equal to the file (but for whitespace between
tokens); every other file (y_ non-objects, n_ invalid, i_ implementation
defined) is answered 400 and stores nothing."""

import json
import os
import unittest

from harness import REPO, Cluster, make_workspace
from ingest_helpers import UUID_RE, Pipeline, expected_payload, inbox_count, inbox_row

CORPUS = os.path.join(REPO, "tests", "data", "jsontestsuite", "test_parsing")

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


def corpus():
    files = sorted(f for f in os.listdir(CORPUS) if f.endswith(".json"))
    out = []
    for f in files:
        with open(os.path.join(CORPUS, f), "rb") as fh:
            out.append((f, fh.read()))
    return out


class Corpus(unittest.TestCase):
    def test_corpus_present(self):
        names = [f for f, _ in corpus()]
        self.assertGreater(len(names), 300)
        self.assertEqual(sum(f.startswith("y_object") for f in names), 12)

    def test_y_object_files_are_stored_verbatim(self):
        for name, body in corpus():
            if not name.startswith("y_object"):
                continue
            with self.subTest(file=name):
                st, hdrs, b = P.post(WS, body, query="dedupe_key=" + name)
                self.assertEqual(st, 202, b)
                self.assertEqual(hdrs.get("content-type", "").split(";")[0], "application/json")
                j = json.loads(b)
                self.assertIs(j["accepted"], True, j)
                self.assertRegex(j["event_id"], UUID_RE)
                row = inbox_row(db, j["event_id"])
                self.assertIsNotNone(row, "202 without its row")
                self.assertEqual(row["dedupe_key"], name)
                self.assertEqual(row["payload"], expected_payload(body))

    def test_every_other_file_is_refused(self):
        before = inbox_count(db, WS)
        # Each request carries its file name as dedupe key, so a row stored
        # by mistake names its file.
        for name, body in corpus():
            if name.startswith("y_object"):
                continue
            with self.subTest(file=name):
                st, hdrs, b = P.post(WS, body, query="dedupe_key=refused-" + name)
                self.assertEqual(st, 400, b[:300])
                self.assertEqual(hdrs.get("content-type", "").split(";")[0], "application/json")
                j = json.loads(b)
                self.assertIsInstance(j.get("error"), str)
                self.assertIsInstance(j.get("message"), str)
        stored = db.query("select dedupe_key from infonchat.event_inbox where workspace_id = %s "
                          "and dedupe_key like 'refused-%%'", WS)
        self.assertEqual(stored, [], "rows stored for refused bodies")
        self.assertEqual(inbox_count(db, WS), before)


if __name__ == "__main__":
    unittest.main()
