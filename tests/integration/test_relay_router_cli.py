"""Command-line vocabulary of outbox-relay and router: usage errors exit
64 with one line on stderr, --help and --version, and their man pages:
mandoc -Tlint clean, every option --help prints documented. No database."""

import os
import re
import shutil
import subprocess
import unittest

from harness import REPO, bin_path, scaled

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("INFONCHAT_")}
LONG_DIR = "/tmp/" + "d" * 110
PROGS = ("outbox-relay", "router")

USAGE_ERRORS = {
    "outbox-relay": [
        ["--bogus"],
        [],                                            # no --run-dir, no --in
        ["--in", "-", "extra"],
        ["--in", "bogus"],
        ["--in", "-", "--out", "bogus"],
        ["--in", "-"],                                 # no output
        ["--run-dir", LONG_DIR],
        ["--in", "-", "--out", "-", "--batch-max", "0"],
        ["--in", "-", "--out", "-", "--batch-max", "x"],
        ["--in", "-", "--out", "-", "--sweep-interval", "5"],
        ["--in", "-", "--out", "-", "--sweep-interval", "60001"],
        ["--in", "-", "--out", "-", "--hwm", "0"],
        ["--in", "-", "--out", "-", "--max-line", "1"],
        ["--in", "-", "--out", "-", "--topic", "a/"],  # only with --replay-from
        ["--in", "-", "--out", "-", "--kind", "a"],
        ["--in", "-", "--out", "-", "--replay-to", "5"],
        ["--replay-from", "-1"],
        ["--replay-from", "x"],
        ["--replay-from", "10", "--replay-to", "9"],
        ["--replay-from", "1", "--in", "-"],
        ["--replay-from", "1", "--out", "nonsense"],
        ["--replay-from", "1"] + ["--topic", "t"] * 65,
        ["--in", "-", "--out", "-", "--notify-fd", "999"],
        ["--in", "-", "--out", "-", "--log-level", "loud"],
    ],
    "router": [
        ["--bogus"],
        [],
        ["--run-dir", "/tmp", "extra"],
        ["--run-dir", "/tmp", "--topic", "a"],        # only with --tail
        ["--run-dir", "/tmp", "--kind", "a"],
        ["--in", "-", "--out", "@ipc:///tmp/x.sock"],
        ["--in", "@ipc:///tmp/x.sock"],               # no output
        ["--in", "@ipc:///tmp/x.sock", "--out", "-"],
        ["--tail"],                                    # nothing to subscribe at
        ["--tail", "--run-dir", "/tmp", "--out", "@ipc:///tmp/y.sock"],
        ["--tail", "--in", "nonsense"],
        ["--run-dir", LONG_DIR],
        ["--run-dir", "/tmp", "--hwm", "0"],
        ["--run-dir", "/tmp", "--stats-interval", "-1"],
        ["--run-dir", "/tmp", "--notify-fd", "x"],
    ],
}


def run(prog, args, **kw):
    return subprocess.run([bin_path(prog)] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, env=CLEAN_ENV, timeout=scaled(10), **kw)


def help_options(prog):
    """(long names, short letters) of the options --help prints."""
    out = run(prog, ["--help"]).stdout.decode()
    return (re.findall(r"^\s+(?:-\w, )?--([a-z-]+)", out, re.M),
            re.findall(r"^\s+-(\w), --", out, re.M))


class Cli(unittest.TestCase):
    def test_usage_errors_exit_64_with_one_line(self):
        for prog, cases in USAGE_ERRORS.items():
            for args in cases:
                with self.subTest(prog=prog, args=args):
                    p = run(prog, args)
                    err = p.stderr.decode("utf-8", "replace")
                    self.assertEqual(p.returncode, 64, err)
                    self.assertEqual(p.stdout, b"")
                    self.assertEqual(err.count("\n"), 1, err)
                    self.assertTrue(err.startswith(prog + ": "), err)

    def test_help_and_version(self):
        with open(os.path.join(REPO, "Makefile")) as f:
            version = re.search(r"^VERSION\s*:?=\s*(\S+)", f.read(), re.M).group(1)
        for prog in PROGS:
            for flag in ("--help", "-h"):
                p = run(prog, [flag])
                self.assertEqual(p.returncode, 0)
                self.assertTrue(p.stdout.decode().startswith("usage: " + prog))
                self.assertEqual(p.stderr, b"")
            for flag in ("--version", "-V"):
                p = run(prog, [flag])
                self.assertEqual((p.returncode, p.stdout.decode()), (0, "%s %s\n" % (prog, version)))
        longs, _ = help_options("outbox-relay")
        for opt in ("replay-from", "replay-to", "topic", "kind", "batch-max", "sweep-interval",
                    "hwm", "in", "out", "db", "run-dir", "notify-fd"):
            self.assertIn(opt, longs)
        longs, _ = help_options("router")
        for opt in ("tail", "topic", "kind", "hwm", "stats-interval", "in", "out", "run-dir"):
            self.assertIn(opt, longs)


class ManPages(unittest.TestCase):
    @unittest.skipUnless(shutil.which("mandoc"), "mandoc not installed")
    def test_lint_clean(self):
        for prog in PROGS:
            page = os.path.join(REPO, "man", "man1", prog + ".1")
            p = subprocess.run(["mandoc", "-Tlint", "-Wwarning", page], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            self.assertEqual((p.returncode, p.stdout.decode()), (0, ""), prog)

    def test_sections_and_every_option_documented(self):
        for prog in PROGS:
            with open(os.path.join(REPO, "man", "man1", prog + ".1")) as f:
                src = f.read()
            sections = re.findall(r"^\.Sh (.+)$", src, re.M)
            self.assertEqual(sections, ["NAME", "SYNOPSIS", "DESCRIPTION", "ENVIRONMENT", "FILES",
                                        "EXIT STATUS", "EXAMPLES", "DIAGNOSTICS", "SEE ALSO"], prog)
            self.assertIn(".Ss SIGNALS", src)
            longs, shorts = help_options(prog)
            for name in longs:
                with self.subTest(prog=prog, option=name):
                    self.assertRegex(src, r"\.It Fl (?:\w , Fl )?-%s\b" % re.escape(name))
            for c in shorts:
                with self.subTest(prog=prog, option=c):
                    self.assertRegex(src, r"\.It Fl %s , Fl -" % c)
            # the delivery contract, stated plainly
            text = re.sub(r"\s+", " ", re.sub(r"^\.(?:Em|Li|Fl|Nm|Ar) ", "", src, flags=re.M))
            self.assertIn("Delivery contract", src)
            for phrase in ("at least once", "deduplicate by the envelope's id", "replay-from",
                           "high-water mark"):
                self.assertIn(phrase, text, prog)


if __name__ == "__main__":
    unittest.main()
