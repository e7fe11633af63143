"""Command-line vocabulary of ingest-httpd and inbox-writer: usage errors
exit 64 (EX_USAGE) with one line on stderr, --help exits 0, --version
prints the version.  No database needed."""

import os
import re
import socket
import unittest

from harness import REPO
from ingest_helpers import run_cli

CLEAN_ENV = {"INFONCHAT_RUN_DIR": None, "INFONCHAT_DB": None}
LONG_DIR = "/tmp/" + "d" * 110


def makefile_version():
    with open(os.path.join(REPO, "Makefile")) as f:
        m = re.search(r"^VERSION\s*:?=\s*(\S+)", f.read(), re.M)
    return m.group(1)


USAGE_ERRORS = {
    "ingest-httpd": [
        ["--bogus"],
        ["-x", "--out", "-"],
        ["--listen"],
        ["--out", "-", "--listen", "nonsense"],
        ["--out", "-", "--listen", "127.0.0.1:99999"],
        ["--out", "-", "--listen", "127.0.0.1:80:80"],
        ["--out", "-", "extra-operand"],
        [],                                           # no --run-dir, no --out
        ["--out", "bogus"],
        ["--out", ">no-transport"],
        ["--run-dir", LONG_DIR],                      # ipc path too long
        ["--out", "-", "--max-body", "abc"],
        ["--out", "-", "--max-body", "1"],
        ["--out", "-", "--max-body", "2G"],
        ["--out", "-", "--max-body", "-1"],
        ["--out", "-", "--ack-timeout", "0"],
        ["--out", "-", "--ack-timeout", "5s"],
        ["--out", "-", "--max-headers", "100000"],
        ["--out", "-", "--max-connections", ""],
        ["--out", "-", "--log-level", "loud"],
        ["--out", "-", "--notify-fd", "999"],         # not open
        ["--out", "-", "--notify-fd", "x"],
        ["--out", "-", "--help=yes"],
    ],
    "inbox-writer": [
        ["--bogus"],
        ["--in"],
        ["--in", "-", "extra-operand"],
        [],                                           # no --run-dir, no --in
        ["--in", "bogus"],
        ["--in", "-", "--out", "bogus"],
        ["--run-dir", LONG_DIR],
        ["--in", "-", "--batch-max", "0"],
        ["--in", "-", "--batch-max", "ten"],
        ["--in", "-", "--max-line", "12"],
        ["--in", "-", "--allow-async-commit=yes"],
        ["--in", "-", "--log-level", ""],
        ["--in", "-", "--notify-fd", "999"],
    ],
}


class Usage(unittest.TestCase):
    def test_usage_errors_exit_64_with_one_line(self):
        for prog, cases in USAGE_ERRORS.items():
            for args in cases:
                with self.subTest(prog=prog, args=args):
                    p = run_cli(prog, args, env=CLEAN_ENV, input=b"")
                    err = p.stderr.decode("utf-8", "replace")
                    self.assertEqual(p.returncode, 64, err)
                    self.assertEqual(p.stdout, b"")
                    self.assertTrue(err.endswith("\n"), repr(err))
                    self.assertEqual(err.count("\n"), 1, err)
                    self.assertTrue(err.startswith(prog + ": "), err)

    def test_listen_address_in_use_is_not_a_usage_error(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            p = run_cli("ingest-httpd", ["--out", "-", "--listen", "127.0.0.1:%d" % port], env=CLEAN_ENV)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 69, err)      # EX_UNAVAILABLE
        self.assertIn("cannot listen", err)

    def test_help(self):
        for prog, must in (("ingest-httpd", ["--listen", "--max-body", "--ack-timeout", "--out",
                                             "--run-dir", "--notify-fd", "--help", "--version"]),
                           ("inbox-writer", ["--in", "--out", "--db", "--run-dir", "--batch-max",
                                             "--allow-async-commit", "--notify-fd", "--help",
                                             "--version"])):
            for flag in ("--help", "-h"):
                with self.subTest(prog=prog, flag=flag):
                    # --help wins even with other, incomplete options
                    p = run_cli(prog, [flag], env=CLEAN_ENV)
                    out = p.stdout.decode()
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertEqual(p.stderr, b"")
                    self.assertTrue(out.startswith("usage: " + prog), out)
                    for opt in must:
                        self.assertIn(opt, out)

    def test_version(self):
        v = makefile_version()
        for prog in ("ingest-httpd", "inbox-writer"):
            for flag in ("--version", "-V"):
                with self.subTest(prog=prog, flag=flag):
                    p = run_cli(prog, [flag], env=CLEAN_ENV)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertEqual(p.stdout.decode(), "%s %s\n" % (prog, v))
                    self.assertEqual(p.stderr, b"")


if __name__ == "__main__":
    unittest.main()
