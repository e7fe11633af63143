"""Command-line vocabulary of inbox-worker: usage errors exit 64 with one
line on stderr, --help and --version exit 0, every option of --help is in
the manual page, which mandoc finds clean. No database needed."""

import os
import re
import shutil
import subprocess
import unittest

from harness import REPO
from worker_helpers import run_worker

LONG_DIR = "/tmp/" + "d" * 110
USAGE_ERRORS = [
    ["--bogus"],
    [],                                            # no --run-dir, --in or --replay
    ["--in"],
    ["--in", "bogus"],
    ["--in", "-", "--out", "bogus"],
    ["--in", "-", "extra-operand"],
    ["--run-dir", LONG_DIR],
    ["--in", "-", "--batch-max", "0"],
    ["--in", "-", "--batch-max", "10001"],
    ["--in", "-", "--connections", "9"],
    ["--in", "-", "--max-attempts", "0"],
    ["--in", "-", "--retry-delay", "1s"],
    ["--in", "-", "--sweep-interval", "5"],
    ["--in", "-", "--max-line", "12"],
    ["--in", "-", "--workspace", "not-a-uuid"],      # a filter without --replay
    ["--in", "-", "--status", "dead"],
    ["--replay", "--in", "-"],
    ["--replay", "--workspace", "1234"],
    ["--replay", "--since", "yesterday"],
    ["--replay", "--until", "2026-13-01T00:00:00Z"],
    ["--replay", "--role", ""],
    ["--replay", "--status", "gone"],
    ["--replay", "--status", "dead,dead"],
    ["--replay", "--status", "dead,"],
    ["--replay", "--status", ""],
    ["--replay=yes"],
    ["--in", "-", "--log-level", "loud"],
    ["--in", "-", "--notify-fd", "999"],
]


class Cli(unittest.TestCase):
    def test_usage_errors(self):
        for args in USAGE_ERRORS:
            with self.subTest(args=args):
                p = run_worker(None, args, timeout=10)
                err = p.stderr.decode()
                self.assertEqual(p.returncode, 64, (args, err))
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertTrue(err.startswith("inbox-worker: "), err)
                self.assertEqual(p.stdout, b"")

    def test_help_and_version(self):
        p = run_worker(None, ["--help"])
        self.assertEqual(p.returncode, 0)
        text = p.stdout.decode()
        self.assertTrue(text.startswith("usage: inbox-worker "), text)
        opts = re.findall(r"^\s+(?:-\w, )?--([\w-]+)", text, re.M)
        for o in ("batch-max", "connections", "max-attempts", "retry-delay", "sweep-interval",
                  "max-line", "replay", "workspace", "since", "until", "role", "status",
                  "in", "out", "db", "run-dir", "notify-fd", "log-level", "help", "version"):
            self.assertIn(o, opts)
        with open(os.path.join(REPO, "man", "man1", "inbox-worker.1")) as f:
            page = f.read()
        for o in opts:
            self.assertRegex(page, r"Fl -%s(?![\w-])" % re.escape(o), "--%s not in the man page" % o)
        p = run_worker(None, ["-V"])
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout.decode(), r"^inbox-worker \d+\.\d+\.\d+\n$")

    @unittest.skipUnless(shutil.which("mandoc"), "mandoc not installed")
    def test_man_page_lint(self):
        p = subprocess.run(["mandoc", "-Tlint", "-Wwarning",
                            os.path.join(REPO, "man", "man1", "inbox-worker.1")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual((p.returncode, p.stdout), (0, b""))

    def test_no_database_then_term(self):
        """Without a database it keeps trying (no readiness); TERM stops it
        with status 0."""
        import signal
        import time
        from harness import Stage, StageError, tmpdir
        rd = tmpdir("run")
        st = Stage("inbox-worker", ["--db", "host=%s port=1 connect_timeout=1" % rd, "--run-dir", rd],
                   notify=False)
        try:
            time.sleep(0.5)
            self.assertTrue(st.running())
        finally:
            rc = st.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, st.stderr_text())
        self.assertIn('msg="database unavailable"', st.stderr_text())


if __name__ == "__main__":
    unittest.main()
