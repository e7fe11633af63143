#!/usr/bin/python3
"""The fault-injection suite: the whole pipeline under steady load, one
fault after another, then a check of the history (see tests/faults/README).

    INFONCHAT_BIN=build/crash/bin tests/faults/run.py        (make check-faults)

Prints a progress line per fault, the violations if any, the report table,
and last exactly one line

    faults: N passed, N failed

N counts the fault scenarios plus the final check (replay, live subscriber,
whole-table contracts).  Exit status 1 if anything failed, else 0.

Environment (besides harness.py's INFONCHAT_BIN, INFONCHAT_TIMEOUT_SCALE,
INFONCHAT_KEEP_TMP):
    FAULT_SECONDS   run the schedule again and again until the faults have
                    taken at least this long (default 0: once)
    FAULT_RATE      new requests a second, all clients together (default 200)
    FAULT_CLIENTS   sender threads (default 8)
    FAULT_CALM      seconds of calm load before and between faults (default 2)
    FAULT_ONLY      comma-separated substrings: run only the faults whose
                    name holds one of them
    FAULT_REPORT    also write the table (and summary) to this file
    FAULT_SABOTAGE  break the database before the check, to see it fail:
                    drop-inbox, drop-outbox, extra-inbox, unpublish, dup-run
"""

import os
import signal
import subprocess
import sys
import time
import traceback
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.dont_write_bytecode = True   # no __pycache__ in the source tree

import harness                                      # noqa: E402
from harness import Cluster, free_port, make_workspace, scaled, tmpdir  # noqa: E402
import check                                        # noqa: E402
from check import Report, Window                    # noqa: E402
from load import Load                               # noqa: E402
from pipeline import FaultError, Pipeline           # noqa: E402
from worker_helpers import add_agent                # noqa: E402


def env_num(name, default, kind=float):
    try:
        return kind(os.environ.get(name, "") or default)
    except ValueError:
        sys.exit("run.py: %s must be a number" % name)


SECONDS = env_num("FAULT_SECONDS", 0)
RATE = env_num("FAULT_RATE", 200)
CLIENTS = env_num("FAULT_CLIENTS", 8, int)
CALM = env_num("FAULT_CALM", 2)
ONLY = [s for s in os.environ.get("FAULT_ONLY", "").split(",") if s]
REPORT = os.environ.get("FAULT_REPORT", "")
SABOTAGE = os.environ.get("FAULT_SABOTAGE", "")
TIMEOUT = 900        # seconds (scaled, plus twice FAULT_SECONDS) for the whole run


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout("the fault suite took longer than %.0fs" % scaled(TIMEOUT + 2 * SECONDS))


# upstream first: the order of the kill -9 and SIGTERM faults
PIPE_STAGES = ("ingest-httpd", "inbox-writer", "inbox-worker", "outbox-relay", "router")

# (crash point, stage): where each sits is in the README.
CRASH_POINTS = (
    ("httpd.before-reply", "ingest-httpd"),
    ("writer.before-commit", "inbox-writer"),
    ("writer.after-commit", "inbox-writer"),
    ("writer.mid-reply", "inbox-writer"),
    ("worker.before-commit", "inbox-worker"),
    ("worker.after-commit", "inbox-worker"),
    ("relay.before-commit", "outbox-relay"),
    ("relay.after-commit", "outbox-relay"),
)


class Ctx:
    """What a fault acts on."""

    def __init__(self, cluster, pipe, load, rnd):
        self.cluster, self.pipe, self.load, self.round = cluster, pipe, load, rnd


# ---------------------------------------------------------------------------
# the faults: each takes the pipeline down somewhere and brings it back
# (the runner is the supervisor); FaultError when the stage does not behave
# as its contract says.  Each returns a note for the progress line.

def kill9(name):
    def inject(ctx):
        ctx.pipe.kill(name, signal.SIGKILL, expect=-signal.SIGKILL)
        ctx.pipe.start(name)
    return "kill -9 " + name, inject


def sigterm(name):
    """Graceful stop: SIGTERM must drain and exit 0 (DESIGN.md)."""
    def inject(ctx):
        t = time.monotonic()
        ctx.pipe.kill(name, signal.SIGTERM, expect=0, timeout=30)
        drained = time.monotonic() - t
        ctx.pipe.start(name)
        return "drained in %.2fs" % drained
    return "SIGTERM " + name, inject


def sigstop(name, seconds=3.0):
    def inject(ctx):
        ctx.pipe.signal(name, signal.SIGSTOP)
        time.sleep(seconds)
        ctx.pipe.signal(name, signal.SIGCONT)
        if not ctx.pipe.stages[name].running():
            raise FaultError("%s did not survive SIGSTOP/SIGCONT" % name)
    return "SIGSTOP %.0fs %s" % (seconds, name), inject


def pg_immediate(down=1.0):
    def inject(ctx):
        ctx.cluster.stop_server(immediate=True)
        time.sleep(down)
        ctx.cluster.start_server()
    return "postgres stop -m immediate", inject


def crash(point, name):
    """Stop the stage gracefully, run it with the crash point armed until it
    kills itself there (SIGKILL status and the log line), run it again."""
    def inject(ctx):
        after = (3, 1, 7, 2)[ctx.round % 4]
        ctx.pipe.kill(name, signal.SIGTERM, expect=0, timeout=30)
        st = ctx.pipe.start(name, env={"INFONCHAT_CRASH_POINT": point,
                                       "INFONCHAT_CRASH_AFTER": after}, may_die_early=True)
        try:
            rc = st.wait(timeout=30)
        except subprocess.TimeoutExpired:
            st.stop(timeout=10)
            raise FaultError("%s: crash point %s (pass %d) not reached within %.0fs\n%s"
                             % (name, point, after, scaled(30), ctx.pipe.log_tail(name)))
        text = st.stderr_text()
        if rc != -signal.SIGKILL or 'msg="crash point"' not in text or "point=" + point not in text:
            raise FaultError("%s with %s: exit status %s, want SIGKILL and a crash point line\n%s"
                             % (name, point, rc, ctx.pipe.log_tail(name)))
        ctx.pipe.start(name)
        return "pass %d" % after
    return "crash " + point, inject


def schedule():
    faults = [kill9(n) for n in PIPE_STAGES]
    faults.append(pg_immediate())
    faults += [sigterm(n) for n in PIPE_STAGES]
    faults += [sigstop("inbox-worker"), sigstop("outbox-relay")]
    faults += [crash(p, n) for p, n in CRASH_POINTS]
    if ONLY:
        faults = [f for f in faults if any(s in f[0] for s in ONLY)]
    return faults


# ---------------------------------------------------------------------------
# the runner

def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def supervise(pipe, window, unexpected=True):
    """Restart any stage that is not running; if unexpected (it died on its
    own, not by a fault that failed), charge that to window."""
    for name, rc in pipe.dead_stages():
        if unexpected:
            window.problems.append("%s exited unexpectedly (status %s)\n%s"
                                   % (name, rc, pipe.log_tail(name) if name in pipe.stages else ""))
            log("  ! %s exited unexpectedly (status %s); restarting it" % (name, rc))
        try:
            if name in pipe.stages:
                pipe.start(name)
            else:
                pipe.start_tail(pipe.tail_topic)
        except Exception as e:      # FaultError, StageError
            window.problems.append("restarting %s: %s" % (name, e))


def calm(pipe, window, seconds):
    """seconds of plain load, checking that every stage stays up."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))
        supervise(pipe, window)


WINDOW_MIN = 1.0     # seconds: a window is at least this long, so that its
                     # counts are comparable from one fault to the next


def run_fault(ctx, name, inject):
    """One fault in its own window: inject (which restarts what it took
    down), then wait until requests sent after that are answered 202 again
    (and at least WINDOW_MIN from the start)."""
    w = Window(name, time.monotonic())
    note = ""
    try:
        note = inject(ctx) or ""
    except Exception as e:        # FaultError; or pg-tmp failed (RuntimeError), ...
        w.problems.append("%s: %s" % (type(e).__name__, e))
        supervise(ctx.pipe, w, unexpected=False)    # whatever is down, bring it back
    t_back = time.monotonic()
    if not ctx.load.wait_acks_since(t_back, n=5, timeout=60):
        w.problems.append("no 202 within %.0fs after the fault was over" % scaled(60))
    t_acks = time.monotonic()
    time.sleep(max(0.0, w.t0 + WINDOW_MIN - t_acks))
    w.t1 = time.monotonic()
    log("fault %-32s injected+restarted in %5.2fs, 202s again %.2fs later%s%s"
        % (name, t_back - w.t0, t_acks - t_back, "; " + note if note else "",
           "" if not w.problems else "  PROBLEM: " + w.problems[0].splitlines()[0]))
    return w


def settle(cluster, ws, timeout=90):
    """Until no inbox row is pending and no outbox row unpublished; the
    count left if the time runs out, else None."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        left = cluster.query(
            "select (select count(*) from infonchat.event_inbox where workspace_id = %s"
            "         and status = 'pending'),"
            "       (select count(*) from infonchat.event_outbox where workspace_id = %s"
            "         and published_at is null)", ws, ws)[0]
        if left == ["0", "0"]:
            return None
        if time.monotonic() > deadline:
            return "pending inbox rows %s, unpublished outbox rows %s" % tuple(left)
        time.sleep(0.2)


def wait_quiet(pipe, seconds=1.0, timeout=20):
    """Until the live subscriber has printed nothing new for seconds."""
    deadline = time.monotonic() + scaled(timeout)
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = os.path.getsize(pipe.tail.stdout_path)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return
        time.sleep(0.1)


# FAULT_SABOTAGE: damage done after the run, before the check, which must
# then fail (how the checker itself is tested).  %s is the workspace.
_ONE_EVENT = "(select id from infonchat.event_inbox where workspace_id = %s order by id limit 1)"
SABOTAGES = {
    "drop-inbox": "delete from infonchat.event_inbox where id = " + _ONE_EVENT,
    "drop-outbox": "delete from infonchat.event_outbox where id = (select id from"
                   " infonchat.event_outbox where event_id = " + _ONE_EVENT + " limit 1)",
    "unpublish": "update infonchat.event_outbox set published_at = null where event_id = "
                 + _ONE_EVENT,
    "dup-run": "insert into infonchat.event_outbox(event_id, workspace_id, kind, topic, data)"
               " select event_id, workspace_id, kind, topic, data from infonchat.event_outbox"
               " where kind = 'agent_run.queued' and event_id = " + _ONE_EVENT,
    "extra-inbox": "insert into infonchat.event_inbox(workspace_id, source_kind, event_type,"
                   " role, source_identifier, dedupe_key, payload, status) values (%s,"
                   " 'webhook.faults', 'x', 'webhook.faults.x', 'x', 'never-sent', '{}',"
                   " 'processed')",
}


def setup(cluster):
    """Workspace, catch-all agent, the five stages, the live subscriber and
    the load: (ws, agent, pipe, load)."""
    ws = make_workspace(cluster, "faults")
    agent = add_agent(cluster, ws, "webhook.*", name="catch-all")
    log_root = tmpdir("faults")
    pipe = Pipeline(cluster, free_port(), log_root)
    pipe.start_all()
    pipe.start_tail(ws + "/")
    load = Load(pipe.port, ws, RATE, CLIENTS, "k" + uuid.uuid4().hex[:8])
    load.start()
    log("pipeline up (logs in %s), load started" % log_root)
    return ws, agent, pipe, load


def run_schedule(cluster, pipe, load):
    """Baseline calm, then the schedule (again and again for FAULT_SECONDS);
    returns (the fault windows, the baseline window)."""
    baseline = Window("(baseline)", time.monotonic())   # its time counts as calm
    calm(pipe, baseline, CALM + 1)
    windows = []
    t_faults, rnd = time.monotonic(), 0
    while True:
        for name, inject in schedule():
            label = name if rnd == 0 else "%s #%d" % (name, rnd + 1)
            w = run_fault(Ctx(cluster, pipe, load, rnd), label, inject)
            windows.append(w)
            calm(pipe, w, CALM)
        rnd += 1
        if time.monotonic() - t_faults >= SECONDS:
            return windows, baseline


def finish(cluster, ws, pipe):
    """After the load: settle, stop every stage (SIGTERM must give 0), so
    that the database holds still for the check.  Returns (problems, the
    live subscriber's lines)."""
    problems = []
    left = settle(cluster, ws)
    if left:
        problems.append("pipeline did not settle within %.0fs: %s" % (scaled(90), left))
    wait_quiet(pipe)
    for name, rc in pipe.stop_all():
        problems.append("%s exited with status %s on the final SIGTERM" % (name, rc))
    return problems, pipe.tail_lines()


def main():
    if SABOTAGE and SABOTAGE not in SABOTAGES:
        sys.exit("run.py: FAULT_SABOTAGE must be one of " + ", ".join(sorted(SABOTAGES)))
    t_begin = time.monotonic()
    log("fault suite: binaries %s, %.0f req/s over %d clients, calm %.1fs%s"
        % (harness.BIN_DIR, RATE, CLIENTS, CALM,
           ", at least %.0fs of faults" % SECONDS if SECONDS else ""))
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(scaled(TIMEOUT + 2 * SECONDS)))
    cluster = pipe = load = None
    try:
        cluster = Cluster()
        ws, agent, pipe, load = setup(cluster)
        windows, baseline = run_schedule(cluster, pipe, load)
        t_stop = load.stop()
        supervise(pipe, windows[-1] if windows else baseline)
        log("load stopped after %.1fs; settling" % (t_stop - load.t_start))
        problems, live_lines = finish(cluster, ws, pipe)
        log_root, pipe = pipe.log_root, None
        if SABOTAGE:
            cluster.execute(SABOTAGES[SABOTAGE], ws)
            log("SABOTAGE %s done: the check below must fail" % SABOTAGE)
        replay_lines = check.replay(cluster, ws, os.path.join(log_root, "replay.ndjson"))

        rep = Report(windows, load.t_start, t_stop)
        rep.buckets[check.FINAL].violations += baseline.problems + problems
        check.run_checks(rep, cluster, ws, agent, load.history.snapshot(), replay_lines, live_lines)
        return report(rep, time.monotonic() - t_begin)
    except BaseException:
        traceback.print_exc()
        log("faults: 0 passed, 1 failed")
        return 1
    finally:
        if load:
            load.halt.set()
        if pipe:
            pipe.stop_all()
        if cluster:
            cluster.stop()


def report(rep, seconds):
    """Print violations, the table and the summary line; the exit status."""
    bad = rep.all_violations()
    if bad:
        log("\nVIOLATIONS (%d):" % len(bad))
        shown = {}
        for bucket, text in bad:
            shown[bucket] = shown.get(bucket, 0) + 1
            if shown[bucket] <= check.SHOW:
                log("  [%s] %s" % (bucket, text))
        for bucket, n in shown.items():
            if n > check.SHOW:
                log("  [%s] ... and %d more" % (bucket, n - check.SHOW))
    lines = check.table(rep) + [""] + rep.summary + ["run took %.0fs" % seconds]
    log("")
    for ln in lines:
        log(ln)
    if REPORT:
        with open(REPORT, "w") as f:
            f.write("\n".join(lines) + "\n")
    scenarios = [b for b in rep.buckets.values() if b.name != check.CALM]
    # calm-time violations count against the final check
    failed = sum(1 for b in scenarios if not b.ok)
    if not rep.buckets[check.CALM].ok and rep.buckets[check.FINAL].ok:
        failed += 1
    if bad and not harness.KEEP_TMP:
        log("(INFONCHAT_KEEP_TMP=1 keeps the cluster and every stage's log)")
    log("faults: %d passed, %d failed" % (len(scenarios) - failed, failed))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
