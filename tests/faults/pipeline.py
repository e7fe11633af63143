"""The five stages on one cluster's run dir, with the runner as supervisor
(the faults suite).

Pipeline.start(name) runs a stage with harness.stage_args() (ingest-httpd
always on the same port) and waits for its readiness; every incarnation
logs to a directory of its own under log_root (NNN-<stage>/<stage>.stderr),
so that the log of a stage that was killed stays readable.

The runner is the supervisor: a stage is restarted only by the fault that
took it down, and a stage found dead otherwise is an unexpected exit
(dead_stages()), which the runner reports and restarts.
"""

import os
import signal
import subprocess
import time

from harness import STAGES, Stage, StageError, stage_args

CRASH_ENV = ("INFONCHAT_CRASH_POINT", "INFONCHAT_CRASH_AFTER")


class FaultError(Exception):
    """A fault did not go as its contract says (exit status, readiness, ...)."""


class _Stage(Stage):
    """A Stage that, with may_die_early, returns even when the program exits
    before it is ready (a crash point can fire during start-up)."""

    def __init__(self, *a, may_die_early=False, **kw):
        self.may_die_early = may_die_early
        super().__init__(*a, **kw)

    def _wait_ready(self, fd, timeout):
        try:
            super()._wait_ready(fd, timeout)
        except StageError:
            if self.may_die_early and self.proc.poll() is not None:
                return
            raise


class Pipeline:
    def __init__(self, cluster, port, log_root):
        self.cluster, self.port, self.log_root = cluster, port, log_root
        self.stages = {}        # name -> the current incarnation's Stage
        self.count = 0          # incarnations started (log directory numbers)
        self.tail = None
        self.tail_topic = None

    # -- starting -------------------------------------------------------------

    def _log_dir(self, name):
        self.count += 1
        d = os.path.join(self.log_root, "%03d-%s" % (self.count, name))
        os.mkdir(d)
        return d

    def start(self, name, env=None, may_die_early=False, attempts=3):
        """Start stage name (crash env removed unless given); return its Stage
        once ready.  A start that fails (e.g. the port not free yet) is tried
        again, up to attempts times, then FaultError."""
        full_env = {k: None for k in CRASH_ENV}
        full_env.update(env or {})
        last = None
        for _ in range(attempts):
            try:
                st = _Stage(name, stage_args(name, self.cluster, port=self.port), env=full_env,
                            log_dir=self._log_dir(name), notify_timeout=20,
                            may_die_early=may_die_early)
                self.stages[name] = st
                return st
            except StageError as e:
                last = e
                time.sleep(0.5)
        raise FaultError("%s did not start: %s" % (name, str(last)[-2000:]))

    def start_all(self):
        for name in STAGES:             # downstream first
            self.start(name)

    def start_tail(self, topic):
        """The live subscriber: router --tail on the run dir, stdout to a file."""
        self.tail_topic = topic
        self.tail = Stage("router", ["--tail", "--run-dir", self.cluster.run_dir,
                                     "--topic", topic], log_dir=self._log_dir("tail"))
        return self.tail

    def tail_lines(self):
        with open(self.tail.stdout_path, "rb") as f:
            return f.read().split(b"\n")[:-1]

    # -- signals --------------------------------------------------------------

    def kill(self, name, sig=signal.SIGKILL, expect=-signal.SIGKILL, timeout=20.0):
        """Send sig, wait for the exit (unscaled timeout, scaled by Stage),
        FaultError unless the status is expect."""
        st = self.stages[name]
        st.kill(sig)
        try:
            rc = st.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            st.stop(sig=signal.SIGKILL, timeout=5)
            raise FaultError("%s did not exit within %.0fs of signal %d\n%s"
                             % (name, timeout, sig, self.log_tail(name)))
        if rc != expect:
            raise FaultError("%s exited with status %s after signal %d, expected %s\n%s"
                             % (name, rc, sig, expect, self.log_tail(name)))
        return rc

    def signal(self, name, sig):
        self.stages[name].kill(sig)

    # -- state ----------------------------------------------------------------

    def dead_stages(self):
        """[(name, exit status)] of the stages (and the tail) not running."""
        out = [(n, st.poll()) for n, st in self.stages.items() if st.poll() is not None]
        if self.tail and self.tail.poll() is not None:
            out.append(("router --tail", self.tail.poll()))
        return out

    def log_tail(self, name, lines=12):
        st = self.stages.get(name)
        text = st.stderr_text() if st else ""
        return "\n".join("    | " + ln for ln in text.splitlines()[-lines:])

    def stop_all(self):
        """SIGCONT everything, then SIGTERM upstream first; return
        [(name, status)] of those that did not exit 0."""
        bad = []
        for st in list(self.stages.values()) + ([self.tail] if self.tail else []):
            st.kill(signal.SIGCONT)
        for name in reversed(STAGES):
            st = self.stages.get(name)
            if st is not None:
                rc = st.stop(timeout=20)
                if rc != 0:
                    bad.append((name, rc))
        if self.tail:
            rc = self.tail.stop(timeout=10)
            if rc != 0:
                bad.append(("router --tail", rc))
        return bad
