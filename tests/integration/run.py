#!/usr/bin/python3
"""Run the integration tests.

    tests/integration/run.py [-k SUBSTRING] [FILE_OR_MODULE ...]

Without arguments, runs every tests/integration/test_*.py; otherwise the
files (or module names, e.g. test_ingest) given.  Each module runs as a
unittest suite, so setUpModule/tearDownModule can share one Cluster among
the tests of a module.  Prints one line per test and, last, exactly one line

    integration: N passed, N failed[, N skipped]

(", N skipped" only when some were skipped).  Exit status 1 if any test
failed or errored (including a module that did not import, or a fixture),
else 0.

Environment: INFONCHAT_TEST_TIMEOUT (seconds per test, default 300, scaled
by INFONCHAT_TIMEOUT_SCALE; 0 disables); see harness.py for the rest.
"""

import argparse
import glob
import importlib.util
import os
import signal
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True   # no __pycache__ in the source tree

import harness  # noqa: E402


class TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout("test timed out (INFONCHAT_TEST_TIMEOUT)")


class Result(unittest.TestResult):
    """Counts outcomes and prints one line per test."""

    def __init__(self, out, timeout):
        super().__init__()
        self.out = out
        self.timeout = timeout
        self.passed = 0
        self.failed = 0
        self.skipped_n = 0
        self._t0 = 0.0

    def _line(self, word, test, extra=""):
        dt = time.monotonic() - self._t0 if self._t0 else 0.0
        self.out.write("%-5s %s (%.2fs)%s\n" % (word, _name(test), dt, extra))
        self.out.flush()

    def startTest(self, test):
        super().startTest(test)
        self._t0 = time.monotonic()
        if self.timeout > 0:
            signal.setitimer(signal.ITIMER_REAL, self.timeout)

    def stopTest(self, test):
        if self.timeout > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
        super().stopTest(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1
        self._line("ok", test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.failed += 1
        self._line("FAIL", test)
        self._details(err, test)

    def addError(self, test, err):
        super().addError(test, err)
        self.failed += 1
        # errors in setUpModule/setUpClass etc. arrive with a _ErrorHolder
        self._t0 = 0.0 if not isinstance(test, unittest.TestCase) else self._t0
        self._line("ERROR", test)
        self._details(err, test)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.skipped_n += 1
        self._line("skip", test, ": " + reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.passed += 1
        self._line("ok", test, " (expected failure)")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.failed += 1
        self._line("FAIL", test, " (unexpected success)")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            # the parent test is still reported once; count each failing subtest
            self.failed += 1
            word = "FAIL" if issubclass(err[0], test.failureException) else "ERROR"
            self._line(word, subtest)
            self._details(err, subtest)

    def _details(self, err, test):
        text = self._exc_info_to_string(err, test) if isinstance(test, unittest.TestCase) \
            else "".join(traceback.format_exception(*err))
        for ln in text.rstrip("\n").split("\n"):
            self.out.write("    " + ln + "\n")
        self.out.flush()


def _name(test):
    if isinstance(test, unittest.TestCase):
        return test.id()
    return str(test)


def load(arg, loader, result, pattern):
    """A suite for one file or module name, or None (error recorded)."""
    if arg.endswith(".py") or os.sep in arg:
        path = os.path.abspath(arg)
    else:
        path = os.path.join(HERE, arg + ".py")
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        if not os.path.isfile(path):
            raise FileNotFoundError("no such test file: %s" % arg)
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        suite = loader.loadTestsFromModule(mod)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        result.failed += 1
        result.out.write("ERROR %s (import)\n" % name)
        for ln in traceback.format_exc().rstrip("\n").split("\n"):
            result.out.write("    " + ln + "\n")
        return None
    if pattern:
        suite = _filter(suite, pattern)
    return suite


def _filter(suite, pattern):
    out = unittest.TestSuite()
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            out.addTest(_filter(t, pattern))
        elif pattern in t.id():
            out.addTest(t)
    return out


def main():
    ap = argparse.ArgumentParser(description="Run the infonchat integration tests.")
    ap.add_argument("tests", nargs="*", help="test files or module names (default: test_*.py here)")
    ap.add_argument("-k", dest="pattern", help="only tests whose id contains this")
    opts = ap.parse_args()

    try:
        timeout = float(os.environ.get("INFONCHAT_TEST_TIMEOUT", "300") or 0)
    except ValueError:
        timeout = 300.0
    timeout = harness.scaled(timeout) if timeout > 0 else 0
    signal.signal(signal.SIGALRM, _on_alarm)
    # SIGTERM (e.g. from make or CI): stop like ^C (unittest lets
    # KeyboardInterrupt through); harness's atexit cleanup stops clusters.
    def _on_term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, _on_term)

    files = opts.tests or sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    loader = unittest.TestLoader()
    result = Result(sys.stdout, timeout)
    try:
        for f in files:
            suite = load(f, loader, result, opts.pattern)
            if suite is None:
                continue
            # One top-level run per module: TestSuite.run() ends a top-level
            # run with the pending tearDownClass/tearDownModule, so a
            # module's cluster is gone before the next module starts.
            suite.run(result)
    except KeyboardInterrupt:
        sys.stdout.write("interrupted\n")
        result.failed += 1

    line = "integration: %d passed, %d failed" % (result.passed, result.failed)
    if result.skipped_n:
        line += ", %d skipped" % result.skipped_n
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
