"""bench/benchlib.py: what bench/run (make bench) and bench/scaling
(make bench-scaling) share. Python 3 standard library only.

The pieces, each with its contract:

  Stack        a throwaway PostgreSQL (tests/integration/harness.py's
               Cluster), one workspace, N agents whose role matches every
               event, the five stages started as harness.stage_args() says,
               and a Subscriber. Stages can be restarted with other options
               (scaling) on the same database.
  Subscriber   `router --tail` on the workspace's role events; stamps every
               line with time.time() when it is read.
  Nginx        an nginx answering every request `return 202` (the ceiling
               of an HTTP front that does nothing).
  run_wrk, run_loadgen      the two load generators, parsed.
  pg_ceiling   PostgreSQL's own batched insert rate for the same rows.
  route_ceiling  PostgreSQL's own rate for the contract's writes per event
               (stored, routed, published), in batches.
  measure      one step: load, then counters, CPU and memory, drain, e2e.
  Results      bench/results/<UTC timestamp>/ and its files.

Every time is time.time() (CLOCK_REALTIME), the clock ingest-httpd stamps
received_at with, so a subscriber's arrival time minus received_at is a
latency on one machine.
"""

import calendar
import csv
import datetime
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.dont_write_bytecode = True

from harness import (STAGES, Cluster, Stage, bin_path, free_port,  # noqa: E402
                     stage_args, tmpdir)

WS = "22222222-2222-4222-8222-222222222222"
SOURCE = "bench"
PATH = "/api/v1/webhooks/generic/%s?source=%s" % (WS, SOURCE)
BODY_1K = os.path.join(HERE, "body-1k.json")
# The bench cluster's settings beyond scripts/pg-tmp's (fsync and
# synchronous_commit stay on): room for a whole run's WAL between
# checkpoints, so a checkpoint and its burst of full-page writes does not
# land in one step and not another. An operator tuning for this write rate
# would do the same. BENCH_PG_SETTINGS="" runs with pg-tmp's alone.
PG_SETTINGS = os.environ.get("BENCH_PG_SETTINGS",
                             "max_wal_size = 16GB\ncheckpoint_timeout = 30min")
LOADGEN = os.path.join(REPO, "build", "default", "bench", "loadgen")
POST_LUA = os.path.join(HERE, "post.lua")

# What the tables call each measured process group, in pipeline order.
ENTITIES = ("ingest-httpd", "inbox-writer", "inbox-worker", "outbox-relay", "router", "postgres")
SHORT = {"ingest-httpd": "httpd", "inbox-writer": "writer", "inbox-worker": "worker",
         "outbox-relay": "relay", "router": "router", "postgres": "pg"}


# ---------------------------------------------------------------------------
# knobs

def env_int(name, default):
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


def env_list(name, default):
    """A space- or comma-separated list of ints from the environment; unset
    means default, set but empty means none (those steps are skipped)."""
    if name not in os.environ:
        return list(default)
    return [int(x) for x in os.environ[name].replace(",", " ").split()]


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------------------
# /proc: CPU and memory of a process

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid, children=False):
    """utime + stime of pid in seconds (0 when it is gone); with children,
    also cutime + cstime: the children it has waited for."""
    try:
        f = _stat_fields(pid)
    except (OSError, ValueError, IndexError):
        return 0.0
    # fields after "(comm)": state ppid ... utime=[11] stime=[12] cutime=[13] cstime=[14]
    t = int(f[11]) + int(f[12])
    if children:
        t += int(f[13]) + int(f[14])
    return t / TICK


def child_pids(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if int(_stat_fields(int(d))[1]) == ppid:
                    out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def status_kb(pid, field):
    """A kB figure from /proc/PID/status (VmRSS, VmHWM, ...); 0 if gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    """Proportional set size (shared pages split among their users), so that
    PostgreSQL's processes sum to the memory they really hold; VmRSS when
    smaps_rollup cannot be read."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return status_kb(pid, "VmRSS")


def machine_ticks():
    """(idle, total) clock ticks of all CPUs so far (/proc/stat; idle
    counts iowait too)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v[:8])


def children_cpu():
    """CPU seconds of this process's children that have been waited for (the
    load generators: their CPU over a step is the difference)."""
    t = os.times()
    return t.children_user + t.children_system


def tcp_passive_opens():
    """Connections accepted by this machine's TCP so far (/proc/net/snmp):
    the difference over a step shows whether clients reconnected."""
    with open("/proc/net/snmp") as f:
        lines = [l.split() for l in f if l.startswith("Tcp:")]
    return int(lines[1][lines[0].index("PassiveOpens")])


# ---------------------------------------------------------------------------
# the subscriber: end-to-end latency

_day_cache = {}


def epoch(ts):
    """'2026-11-26T21:09:34.123456Z' -> seconds since the epoch (float)."""
    head = ts[:19]
    base = _day_cache.get(head)
    if base is None:
        base = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
        _day_cache[head] = base
    frac = ts[20:-1]
    return base + (int(frac) / 10 ** len(frac) if frac else 0.0)


def _field(line, key):
    """The string value of the first "key":"..." in an envelope line."""
    i = line.find(key)
    if i < 0:
        return None
    i += len(key)
    return line[i:line.index(b'"', i)].decode()


class Subscriber:
    """`router --tail` subscribed to the workspace's role events (one per
    accepted event; agent_run.queued envelopes are left out).

    For each event delivered the first time (delivery is at least once):
        latency = time.time() when its line is read - data.received_at
    received_at is stamped by ingest-httpd once the request is complete, so
    this covers the ack path, the writer's commit, the hint, the worker's
    routing commit, the relay's publish, the router and the pipe to us.
    Parsing is two string searches a line, to keep our own CPU low.

    Live delivery drops what a slow subscriber cannot take (router --hwm).
    Draining the backlog of a durable-ingest-alone step publishes 7,000 and
    more role events a second to this reader, which shares 2 saturated
    cores: with the default 10,000 it lost 45 of 191,779 events once. The
    tail's own queue is therefore 1,000,000 (its memory, not a stage's), so
    that the delivered count measures the pipeline, not this reader."""

    def __init__(self, run_dir):
        self.proc = subprocess.Popen(
            [bin_path("router"), "--tail", "--run-dir", run_dir, "--topic", WS + "/",
             "--kind", "webhook.", "--hwm", "1000000"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.lock = threading.Lock()
        self.seen = set()
        self.samples = []         # (received_at epoch, latency s)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        time.sleep(1.0)           # the subscription reaches the router

    def _read(self):
        for line in self.proc.stdout:
            now = time.time()
            eid = _field(line, b'"event_id":"')
            rec = _field(line, b'"received_at":"')
            if eid is None or rec is None:
                continue
            with self.lock:
                if eid in self.seen:
                    continue
                self.seen.add(eid)
                r = epoch(rec)
                self.samples.append((r, now - r))

    def count_since(self, t0):
        with self.lock:
            return sum(1 for r, _ in self.samples if r >= t0)

    def latencies(self, t0, t1):
        """Sorted latencies (s) of events received in [t0, t1)."""
        with self.lock:
            return sorted(l for r, l in self.samples if t0 <= r < t1)

    def forget(self):
        with self.lock:
            self.samples = []
            self.seen = set()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def pct(sorted_values, p):
    """The p-th quantile (0..1) of an ascending list, nearest rank; None if empty."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p * (len(sorted_values) - 1) + 0.5))]


# ---------------------------------------------------------------------------
# the stack

class Stack:
    """PostgreSQL + the five stages + a subscriber, on one run dir.

    Stack(agents, log_level):
      agents     agents in the workspace whose role ('webhook.*') matches
                 every event: each event then gets a chat, a queued run and
                 one more outbox row per agent (set_agents() changes it).
      log_level  --log-level for every stage (None: their default, info,
                 which is one log line per event as deployed).
    start(extra, workers):
      extra      {stage name: [options]} added to that stage's stage_args().
      workers    inbox-worker processes. The first binds the run dir's
                 socket and gets the writer's hints; the others bind a
                 socket of their own that nobody connects to, so they find
                 work by sweeping the table (as a second worker on another
                 host would).
    """

    def __init__(self, agents=1, log_level=None):
        os.environ["INFONCHAT_PG_SETTINGS"] = PG_SETTINGS.replace("\\n", "\n")
        self.db = Cluster()
        self.db.execute("insert into infonchat.workspaces (id, name) values (%s, 'bench')", WS)
        self.set_agents(agents)
        self.log_level = log_level
        # The first line of postmaster.pid, read by the server itself (the
        # data directory may be one only its user can read).
        self.postmaster = int(self.db.value(
            "select split_part(pg_read_file('postmaster.pid'), E'\\n', 1)"))
        self.stages = {}          # name -> [Stage]
        self.sub = None
        self.port = None
        self.started = []         # (name, Stage) of every stage ever started: their logs

    # -- configuration ------------------------------------------------------

    def set_agents(self, n):
        self.agents = n
        self.db.execute("delete from infonchat.agent_roles; delete from infonchat.agents")
        for i in range(n):
            aid = "aaaaaaaa-0000-4000-8000-%012d" % i
            self.db.execute("insert into infonchat.agents (id, workspace_id, name) values (%s, %s, %s);"
                            "insert into infonchat.agent_roles (workspace_id, agent_id, role)"
                            " values (%s, %s, 'webhook.*')", aid, WS, "bench-%d" % i, WS, aid)

    def truncate(self):
        """Empty the event tables (between configurations) and checkpoint, so
        that each configuration starts from the same state."""
        self.db.execute("truncate infonchat.event_inbox, infonchat.event_outbox, infonchat.chats,"
                        " infonchat.agent_runs cascade; checkpoint", timeout=600)

    def settle(self):
        """VACUUM (ANALYZE) the event tables, then CHECKPOINT: what the steps
        before left for autovacuum, and the data pages they dirtied, are
        dealt with now, outside any measurement. Without the checkpoint (the
        bench's settings hold checkpoints off for 30 min) the kernel was
        still writing back a burst's pages in the next step, and every
        commit's WAL fsync queued behind it: after an ingest-alone step, a
        1,000/s step showed ack p99 of 18-400 ms instead of 4-5."""
        self.db.execute("vacuum (analyze) infonchat.event_inbox, infonchat.event_outbox,"
                        " infonchat.chats, infonchat.agent_runs", timeout=600)
        self.db.execute("checkpoint", timeout=600)

    # -- processes -----------------------------------------------------------

    def start(self, extra=None, workers=1):
        """Start the five stages (downstream first) and the subscriber."""
        extra = extra or {}
        self.extra, self.workers = extra, workers
        self.port = free_port()
        run_dir = self.db.run_dir
        ll = ["--log-level", self.log_level] if self.log_level else []
        for name in STAGES:
            n = workers if name == "inbox-worker" else 1
            self.stages[name] = []
            for i in range(n):
                more = list(extra.get(name, [])) + ll
                if name == "ingest-httpd":
                    # as deployed (scripts/s6 pass INFONCHAT_DB): signatures
                    # and require_signature are checked against the database
                    more = ["--db", self.db.conninfo] + more
                if i > 0:
                    more += ["--in", "@ipc://%s/inbox-worker-%d.sock" % (run_dir, i + 1)]
                st = Stage(name, stage_args(name, self.db, self.port, more))
                self.started.append((name, st))
                self.stages[name].append(st)
        self.sub = Subscriber(run_dir)

    def stop(self):
        """Stop the subscriber and the stages (upstream first). Returns the
        list of (stage, exit status) that were not 0."""
        bad = []
        if self.sub:
            self.sub.stop()
            self.sub = None
        for name in reversed(STAGES):
            for st in self.stages.get(name, []):
                rc = st.stop()
                if rc != 0:
                    bad.append((name, rc))
        self.stages = {}
        return bad

    def close(self):
        self.stop()
        self.db.stop()

    def pids(self):
        """{entity: [pid]} of every process a CPU or memory figure covers."""
        p = {name: [s.pid for s in sts] for name, sts in self.stages.items()}
        p["postgres"] = [self.postmaster] + child_pids(self.postmaster)
        return p

    def cpu(self):
        """{entity: CPU seconds used so far}. PostgreSQL's figure is the
        postmaster with the children it has reaped (backends that ended) plus
        its live children, so short-lived connections are not lost."""
        out = {}
        for name, pids in self.pids().items():
            if name == "postgres":
                out[name] = cpu_seconds(pids[0], children=True) + sum(cpu_seconds(p) for p in pids[1:])
            else:
                out[name] = sum(cpu_seconds(p) for p in pids)
        return out

    def rss_kb(self):
        """{entity: resident memory now, kB}: VmRSS for the stages (summed over
        processes), the sum of PSS over PostgreSQL's processes."""
        out = {}
        for name, pids in self.pids().items():
            if name == "postgres":
                out[name] = sum(pss_kb(p) for p in pids)
            else:
                out[name] = sum(status_kb(p, "VmRSS") for p in pids)
        return out

    def hwm_kb(self):
        """{stage: VmHWM, kB}: each stage's peak RSS since it started."""
        return {name: sum(status_kb(s.pid, "VmHWM") for s in sts) for name, sts in self.stages.items()}

    # -- database counters ---------------------------------------------------

    def counters(self, since=None):
        """One consistent look at the tables:
             inbox      rows received at or after `since` (epoch seconds;
                        only when since is given: a count over an index)
             pending    inbox rows not yet routed (status 'pending')
             dead       inbox rows given up on
             seq        the highest outbox seq (outbox rows ever made, but for
                        gaps of rolled-back transactions)
             unpub      outbox rows not yet published
        pending, dead and unpub are counts over small partial indexes."""
        inbox = ("(select count(*) from infonchat.event_inbox where received_at >= to_timestamp(%s))"
                 if since is not None else "0")
        r = self.db.query(
            "select " + inbox + ","
            " (select count(*) from infonchat.event_inbox where status = 'pending'),"
            " (select count(*) from infonchat.event_inbox where status = 'dead'),"
            " (select coalesce(max(seq), 0) from infonchat.event_outbox),"
            " (select count(*) from infonchat.event_outbox where published_at is null)",
            *([since] if since is not None else []))[0]
        return dict(zip(("inbox", "pending", "dead", "seq", "unpub"), (int(x) for x in r)))

    def hops(self, t0, t1):
        """Where the end-to-end time goes, from the rows of events received in
        [t0, t1): p50/p99 (ms) of received_at -> start of the worker's
        transaction (outbox created_at) and of that -> published_at."""
        r = self.db.query("""
            select percentile_cont(array[0.5, 0.99]) within group
                       (order by extract(epoch from o.created_at - i.received_at) * 1000),
                   percentile_cont(array[0.5, 0.99]) within group
                       (order by extract(epoch from o.published_at - o.created_at) * 1000)
              from infonchat.event_inbox i join infonchat.event_outbox o
                on o.event_id = i.id and o.kind = i.role
             where i.received_at >= to_timestamp(%s) and i.received_at < to_timestamp(%s)""", t0, t1)
        if not r or r[0][0] is None:
            return None
        a = [float(x) for x in r[0][0].strip("{}").split(",")]
        b = [float(x) for x in r[0][1].strip("{}").split(",")] if r[0][1] else [float("nan")] * 2
        return {"to_worker_p50": a[0], "to_worker_p99": a[1], "to_publish_p50": b[0], "to_publish_p99": b[1]}

    def stage_warnings(self):
        """{stage: (count, first lines)} of the warn/error lines in the logs
        of every stage started (all configurations of a scaling run)."""
        out = {}
        for name, st in self.started:
            n, first = out.get(name, (0, []))
            try:
                with open(st.stderr_path, "rb") as f:
                    for line in f:
                        if b"level=warn" in line or b"level=error" in line:
                            n += 1
                            if len(first) < 20:
                                first.append(line.decode("utf-8", "replace").rstrip())
            except OSError:
                continue
            if n:
                out[name] = (n, first)
        return out


# ---------------------------------------------------------------------------
# memory sampler

class Sampler:
    """Samples stack.rss_kb() every `interval` s in a thread; peak() is the
    highest value per entity since the last reset()."""

    def __init__(self, stack, interval=0.5):
        self.stack, self.interval = stack, interval
        self.lock = threading.Lock()
        self.peaks = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.wait(self.interval):
            try:
                now = self.stack.rss_kb()
            except Exception:
                continue
            with self.lock:
                for k, v in now.items():
                    self.peaks[k] = max(self.peaks.get(k, 0), v)

    def reset(self):
        with self.lock:
            self.peaks = {}

    def peak(self):
        with self.lock:
            return dict(self.peaks)

    def stop(self):
        self.stopping.set()
        self.thread.join()


# ---------------------------------------------------------------------------
# nginx: the ceiling of an HTTP front that does nothing

class Nginx:
    """nginx answering `return 202 '{"accepted":true}'` to every request, with
    2 workers (one per core here) and unlimited keep-alive requests. Runs as
    the calling user (as root: `user root;`, so that the workers can use the
    temporary directory); its files live in a private temporary directory."""

    def __init__(self):
        self.dir = tmpdir("nginx")
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        with open(conf, "w") as f:
            f.write("""worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 202 '{{"accepted":true}}';
        }}
    }}
}}
""".format(d=d, port=self.port, user="user root;" if os.geteuid() == 0 else ""))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        subprocess.run([nginx, "-c", conf, "-e", os.path.join(d, "error.log")], check=True)
        self.pid = None
        for _ in range(50):
            try:
                self.pid = int(open(os.path.join(d, "nginx.pid")).read())
                break
            except (OSError, ValueError):
                time.sleep(0.1)

    def stop(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
            for _ in range(50):
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            self.pid = None


# ---------------------------------------------------------------------------
# load generators

def run_wrk(port, conns, secs, close=False, body=BODY_1K):
    """Closed loop: wrk with `conns` connections for `secs` seconds, each
    connection sending its next request when the previous one is answered
    (bench/post.lua: unique X-Webhook-Id; close: "Connection: close", a new
    connection per request). Returns:
        ok        2xx (and 3xx) responses;  bad: other responses + socket errors
        ok_s      ok per second of wrk's own run time
        p50..p999 ack latency, ms, from wrk's histogram (the first byte
                  written to the last byte read: no TCP handshake in it)"""
    env = dict(os.environ, BENCH_BODY=body, BENCH_CLOSE="1" if close else "0",
               BENCH_TAG="%d%d" % (os.getpid(), time.time_ns() % 10 ** 9))
    cmd = ["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", "%ds" % secs,
           "--timeout", "30s", "-s", POST_LUA, "http://127.0.0.1:%d%s" % (port, PATH)]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = next((l for l in p.stdout.splitlines() if l.startswith("wrk: ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError("wrk failed (%d):\n%s" % (p.returncode, p.stdout))
    v = dict(kv.split("=") for kv in line[5:].split())
    v = {k: int(x) for k, x in v.items()}
    dur = v["duration_us"] / 1e6
    ok = v["requests"] - v["status_errors"]
    return {"ok": ok, "ok_s": ok / dur, "bad": v["status_errors"] + v["connect_errors"] + v["read_errors"]
            + v["write_errors"] + v["timeouts"], "secs": dur, "sent": v["requests"],
            "p50": v["p50_us"] / 1e3, "p90": v["p90_us"] / 1e3, "p99": v["p99_us"] / 1e3,
            "p999": v["p999_us"] / 1e3, "max": v["max_us"] / 1e3}


def run_loadgen(port, rate, secs, conns, close=False, body=BODY_1K):
    """Open loop (bench/loadgen): request i is due at start + i/rate whatever
    the server does, and its latency runs from that due time, so queueing
    shows (no coordinated omission); unanswered requests enter the
    percentiles with the wait they had when the run stopped. At most
    `conns` requests in flight. Returns the same keys as run_wrk, plus
    offered (rate), late and incomplete. ok_s is over the time from the
    first due request to the last answer (the run's length, or more when
    the server fell behind), so a backlog answered late does not count as
    throughput at the offered rate."""
    cmd = [LOADGEN, "-h", "127.0.0.1", "-p", str(port), "-u", PATH, "-r", str(rate),
           "-d", str(secs), "-c", str(conns), "-b", body] + (["-k"] if close else [])
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError("loadgen failed (%d): %s" % (p.returncode, p.stderr))
    v = dict(kv.split("=") for kv in p.stdout.split())
    v = {k: float(x) for k, x in v.items()}
    return {"ok": int(v["ok"]), "ok_s": v["ok"] / v["elapsed_s"], "offered": rate,
            "bad": int(v["non2xx"] + v["errors"]), "late": int(v["late"]),
            "incomplete": int(v["incomplete"]), "secs": v["elapsed_s"], "sent": int(v["ok"] + v["non2xx"]),
            "p50": v["p50_ms"], "p90": v["p90_ms"], "p99": v["p99_ms"], "p999": v["p999_ms"],
            "max": v["max_ms"]}


# ---------------------------------------------------------------------------
# PostgreSQL's own ceiling

# The store of one batch: `rows` new events of the 1 KB body with unique
# dedupe keys in one INSERT, committed (synchronous_commit on).
STORE_SQL = """insert into infonchat.event_inbox (id, workspace_id, source_kind, event_type, role,
    source_identifier, dedupe_key, headers, payload)
select gen_random_uuid(), '%(ws)s', 'webhook.pgbench', 'payment_intent.succeeded',
    'webhook.pgbench.payment_intent_succeeded', 'pgbench', md5(random()::text || g),
    '{"host":"127.0.0.1","content-type":"application/json","content-length":"1024","x-webhook-id":"0123456789abcdef"}',
    '%(payload)s'
from generate_series(1, %(rows)d) g;
"""

# What the contract makes of each stored event, in the fewest statements that
# do it: the route of inbox-worker (claim due pending events, a chat and a
# queued run per matching agent, the role event and an agent_run.queued
# message in event_outbox, the event marked processed; one transaction,
# synchronous commit) and the publish of outbox-relay (claim unpublished
# messages in seq order, read their envelopes, mark them published;
# synchronous_commit off, as the relay runs). None of what our stages add:
# no hints, no agent lock, no replay checks, no results but the envelopes.
ROUTE_SQL = """with claimed as materialized (
  select e.* from infonchat.event_inbox e
  where e.status = 'pending' and e.next_attempt_at <= now()
  order by e.next_attempt_at limit %(rows)d for update skip locked),
m as materialized (
  select c.id, c.workspace_id, c.role, r.agent_id,
    infonchat.uuid_v7() as chat_id, infonchat.uuid_v7() as run_id
  from claimed c join infonchat.agent_roles r on r.workspace_id = c.workspace_id
    and (r.role = c.role or (right(r.role, 1) = '*' and starts_with(c.role, left(r.role, -1))))),
chats as (insert into infonchat.chats (id, workspace_id, agent_id, event_id, title)
  select chat_id, workspace_id, agent_id, id, 'pgbench' from m),
runs as (insert into infonchat.agent_runs (id, workspace_id, agent_id, chat_id, event_id)
  select run_id, workspace_id, agent_id, chat_id, id from m),
outbox as (insert into infonchat.event_outbox (id, event_id, workspace_id, kind, topic, data)
  select infonchat.uuid_v7(), c.id, c.workspace_id, c.role, c.workspace_id || '/' || c.role,
    infonchat.inbox_envelope(c::infonchat.event_inbox) from claimed c
  union all
  select infonchat.uuid_v7(), m.id, m.workspace_id, 'agent_run.queued',
    m.workspace_id || '/agent_run.queued',
    infonchat.agent_run_queued_data(m.run_id, m.chat_id, m.agent_id, m.id, m.role) from m)
update infonchat.event_inbox e set status = 'processed', processed_at = now(), routed_at = now()
where e.id in (select id from claimed);
begin;
set local synchronous_commit = off;
with c as (select o.id, infonchat.outbox_envelope(o) as env from infonchat.event_outbox o
  where o.published_at is null order by o.seq limit %(out_rows)d for update skip locked),
u as (update infonchat.event_outbox o set published_at = now() from c where o.id = c.id)
select env from c;
commit;
"""


def pgbench(stack, name, sql, secs, clients):
    """Run the pgbench script `sql` with `clients` connections for `secs` s
    against the stack's database (no stage may be up). Returns (scripts per
    second, PostgreSQL CPU seconds used), or (None, None) when pgbench is
    missing or failed."""
    exe = shutil.which("pgbench")
    if exe is None:
        return None, None
    script = os.path.join(tmpdir("pgbench"), name)
    with open(script, "w") as f:
        f.write(sql)
    os.chmod(os.path.dirname(script), 0o755)
    os.chmod(script, 0o644)
    c0 = stack.cpu()["postgres"]
    p = subprocess.run([exe, "-n", "-f", script, "-c", str(clients), "-j", str(clients),
                        "-T", str(secs), stack.db.conninfo], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    cpu = stack.cpu()["postgres"] - c0
    tps = next((float(line.split()[2]) for line in p.stdout.splitlines() if line.startswith("tps")), None)
    if p.returncode != 0 or tps is None:
        log("pgbench failed:\n" + p.stdout)
        return None, None
    return tps, cpu


def _store_sql(body, rows):
    payload = open(body).read().strip().replace("'", "''")
    return STORE_SQL % {"ws": WS, "payload": payload, "rows": rows}


def pg_ceiling(stack, secs, body=BODY_1K, clients=2, rows=64):
    """Rows/s PostgreSQL itself inserts into event_inbox: pgbench, `clients`
    connections (inbox-writer's default), each transaction one INSERT of
    `rows` rows (INSERT ... SELECT from generate_series) with the same
    payload, headers, indexes, unique keys and workspace foreign key as ours,
    fsync and synchronous_commit on. Run while no stage is up; the rows are
    removed after. Returns (rows/s, PostgreSQL CPU us per row)."""
    tps, cpu = pgbench(stack, "insert.sql", _store_sql(body, rows), secs, clients)
    if tps is None:
        return None, None
    done = int(stack.db.value("select count(*) from infonchat.event_inbox where source_kind = 'webhook.pgbench'"))
    stack.truncate()
    return tps * rows, cpu * 1e6 / max(done, 1)


def route_ceiling(stack, secs, body=BODY_1K, clients=2, rows=64):
    """Events/s PostgreSQL itself takes through the whole contract: pgbench,
    `clients` connections, each script a batch of `rows` events stored
    (STORE_SQL, committed), routed to the stack's agents and published
    (ROUTE_SQL), three transactions, with the same tables, indexes, keys and
    settings as ours. What the full pipeline could reach if our five stages
    and the load generator cost nothing. Run while no stage is up; the rows
    are removed after. Returns (events/s, PostgreSQL CPU us per event)."""
    sql = _store_sql(body, rows) + ROUTE_SQL % {"rows": rows, "out_rows": rows * (1 + stack.agents)}
    tps, cpu = pgbench(stack, "route.sql", sql, secs, clients)
    if tps is None:
        return None, None
    stored, routed = (int(x) for x in stack.db.query(
        "select count(*), count(*) filter (where status = 'processed') from infonchat.event_inbox")[0])
    stack.truncate()
    # scripts/s x rows is the stored rate; what the last scripts left
    # unrouted does not count
    return tps * rows * routed / max(stored, 1), cpu * 1e6 / max(routed, 1)


# ---------------------------------------------------------------------------
# one measured step

DRAIN_MAX = env_int("BENCH_DRAIN_MAX", 120)


def measure(stack, sampler, load):
    """Run load() (a run_wrk/run_loadgen call returning its dict) against
    the stack and return that dict extended with:

      t0, t1        wall clock before and after the load
      inbox_s       inbox rows received in [t0, t1) per second of the load
                    (r["secs"]; the other rates too)
      routed_s      inbox rows the worker routed per second in the window
                    (= inflow - growth of the pending rows)
      outbox_s      outbox rows made per second (growth of max(seq))
      pub_s         outbox rows published per second
      backlog_in    pending inbox rows at t1 minus at t0 (> 0: the worker
                    fell behind during the step)
      backlog_out   unpublished outbox rows at t1 minus at t0
      drain_s       from t1 until nothing is pending or unpublished and the
                    subscriber has every event of the step (None: not within
                    BENCH_DRAIN_MAX s)
      e2e_p50/p99/p999  request received -> subscriber, ms (Subscriber)
      delivered     events of the step the subscriber got
      cpu_us.<e>    CPU (user+sys) of entity e from t0 to the end of the
                    drain, in microseconds per accepted event (so the work
                    done after the load for this step's events counts)
      core_pct.<e>  CPU of entity e during the load, % of one core
      rss_mb.<e>    peak resident memory of e during the step (sampled)
      opens         TCP connections accepted during the load (machine-wide)
      idle_pct      the machine's idle CPU during the load (iowait included),
                    in % of one core (so 0 to 100 x the number of cores)
      loadgen_pct   CPU of the load generator (wrk or loadgen) during the
                    load, % of one core
      hops          see Stack.hops()

    Before the load the event tables are vacuumed and a checkpoint is made
    (Stack.settle), so that a step does not pay for the dead rows and dirty
    pages earlier steps left.
    """
    stack.settle()
    c0 = stack.counters()
    stack.sub.forget()
    cpu0 = stack.cpu()
    sampler.reset()
    opens0 = tcp_passive_opens()
    ticks0, gen0 = machine_ticks(), children_cpu()
    t0 = time.time()
    r = load()
    t1 = time.time()
    ticks1, gen1 = machine_ticks(), children_cpu()
    opens = tcp_passive_opens() - opens0
    cpu1 = stack.cpu()
    c1 = stack.counters(t0)
    win = r["secs"]                 # the load's own length: every event of the step is in it
    drain = None
    got, got_at = -1, time.time()
    while time.time() - t1 < DRAIN_MAX:
        c = stack.counters(t0)
        n = stack.sub.count_since(t0)
        if n != got:
            got, got_at = n, time.time()
        if c["pending"] == 0 and c["unpub"] == 0:
            if n >= c["inbox"]:
                drain = time.time() - t1
                break
            if time.time() - got_at > 3:      # the subscriber lost some: stop waiting
                drain = got_at - t1
                break
        time.sleep(0.25)
    cpu2 = stack.cpu()
    accepted = max(c1["inbox"], 1)
    routed = c1["inbox"] - (c1["pending"] - c0["pending"])
    made = c1["seq"] - c0["seq"]
    lat = stack.sub.latencies(t0, t1)
    r.update({
        "t0": t0, "t1": t1, "rows": c1["inbox"],
        "inbox_s": c1["inbox"] / win, "routed_s": routed / win, "outbox_s": made / win,
        "pub_s": (made - (c1["unpub"] - c0["unpub"])) / win,
        "backlog_in": c1["pending"] - c0["pending"], "backlog_out": c1["unpub"] - c0["unpub"],
        "drain_s": drain, "delivered": len(lat), "dead": c1["dead"], "opens": opens,
        "e2e_p50": _ms(pct(lat, 0.5)), "e2e_p99": _ms(pct(lat, 0.99)), "e2e_p999": _ms(pct(lat, 0.999)),
        "hops": stack.hops(t0, t1),
        "idle_pct": 100.0 * (os.cpu_count() or 1) * (ticks1[0] - ticks0[0]) / max(ticks1[1] - ticks0[1], 1),
        "loadgen_pct": (gen1 - gen0) * 100 / max(t1 - t0, 1e-9),
    })
    peak = sampler.peak()
    for e in ENTITIES:
        r["cpu_us." + e] = (cpu2[e] - cpu0[e]) * 1e6 / accepted
        r["core_pct." + e] = (cpu1[e] - cpu0[e]) * 100 / win
        r["rss_mb." + e] = peak.get(e, 0) / 1024
    r["cpu_us.total"] = sum(r["cpu_us." + e] for e in ENTITIES)
    if r["ok"] > r["rows"] + r["ok"] * 0.001 + 5:
        r["not_new"] = r["ok"] - r["rows"]
        log("  warning: %d 2xx answers but %d new inbox rows: duplicates counted as accepted?"
            % (r["ok"], r["rows"]))
    if r["delivered"] < r["rows"]:
        log("  warning: the subscriber got %d of the step's %d events" % (r["delivered"], r["rows"]))
    if drain is None:
        log("  warning: not drained within %d s (BENCH_DRAIN_MAX)" % DRAIN_MAX)
    return r


def _ms(s):
    return None if s is None else s * 1000


def wait_drained(stack, timeout=DRAIN_MAX):
    """Until nothing is pending or unpublished (warm-up, between configurations)."""
    end = time.time() + timeout
    while time.time() < end:
        c = stack.counters()
        if c["pending"] == 0 and c["unpub"] == 0:
            return True
        time.sleep(0.25)
    return False


# ---------------------------------------------------------------------------
# tables

def fmt(v, spec):
    """A cell: '-' for None, else v formatted with spec ('d' rounds)."""
    if v is None or v == "":
        return "-"
    if isinstance(v, str):
        return v
    if spec == "d":
        return "%d" % round(v)
    if spec == "ms":   # latencies: 2 decimals under 10 ms, 1 under 100, else none
        return "%.2f" % v if v < 10 else "%.1f" % v if v < 100 else "%d" % round(v)
    return format(v, spec)


def table(rows, columns, groups=None):
    """Fixed-width text table. columns: [(key, header, spec)]; a key may be a
    function of the row. groups: [(header, number of columns)] printed above
    the headers."""
    cells = [[fmt(c[0](r) if callable(c[0]) else r.get(c[0]), c[2]) for c in columns] for r in rows]
    widths = [max([len(c[1])] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = []
    if groups:
        parts, i = [], 0
        for title, n in groups:
            w = sum(widths[i:i + n]) + 2 * (n - 1)
            parts.append(title.center(w, "-" if title.strip() else " ") if title else " " * w)
            i += n
        lines.append("  ".join(parts).rstrip())

    def line(vals):
        return "  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i])
                         for i, v in enumerate(vals)).rstrip()
    lines.append(line([c[1] for c in columns]))
    lines += [line(r) for r in cells]
    return "\n".join(lines)


def write_csv(path, rows):
    """Every key of every row (hops flattened), one row per step."""
    keys = []
    for r in rows:
        for k in r:
            if k not in keys and k != "hops":
                keys.append(k)
    for k in ("to_worker_p50", "to_worker_p99", "to_publish_p50", "to_publish_p99"):
        keys.append("hops." + k)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in rows:
            h = r.get("hops") or {}
            w.writerow([_csv(r.get(k) if not k.startswith("hops.") else h.get(k[5:])) for k in keys])


def _csv(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "%.6g" % v
    return v


# ---------------------------------------------------------------------------
# results directory and machine facts

class Results:
    """bench/results/<UTC timestamp>[-<kind>]/ (or $BENCH_RESULTS/<...>)."""

    def __init__(self, kind=""):
        root = os.environ.get("BENCH_RESULTS") or os.path.join(HERE, "results")
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.dir = os.path.join(root, stamp + ("-" + kind if kind else ""))
        os.makedirs(self.dir, exist_ok=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")


def _cmd(argv):
    """The first line argv prints ("" if it fails)."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           cwd=REPO, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    out = p.stdout.strip()
    return out.splitlines()[0] if out and (p.returncode == 0 or argv[0] != "git") else ""


def machine_facts(stack, knobs):
    """Text: what the figures depend on. Only read-only git commands."""
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = status = ""
    try:
        mem = "%d MiB" % (int(open("/proc/meminfo").readline().split()[1]) // 1024)
    except (OSError, ValueError):
        pass
    describe = _cmd(["git", "describe", "--always", "--tags"])
    if describe:
        dirty = _cmd(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"])
        status = " (uncommitted changes)" if dirty else ""
    else:
        describe = "(not a git checkout)"
    pg_settings = stack.db.query(
        "select name || '=' || current_setting(name) from pg_settings where name in"
        " ('fsync','synchronous_commit','shared_buffers','max_wal_size','checkpoint_timeout','wal_level','full_page_writes')"
        " order by name")
    facts = [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")),
        ("git describe", describe + status),
        ("nproc", str(os.cpu_count())),
        ("cpu", cpu),
        ("memory", mem),
        ("kernel", " ".join(os.uname()[2:4])),
        ("load average before", " ".join(open("/proc/loadavg").read().split()[:3])),
        ("user", "root" if os.geteuid() == 0 else str(os.geteuid())),
        ("PostgreSQL", stack.db.value("select version()")),
        ("PostgreSQL settings", " ".join(r[0] for r in pg_settings)),
        ("wrk", _cmd(["wrk", "-v"]).split(" Copyright")[0]),
        ("nginx", _cmd([shutil.which("nginx") or "/usr/sbin/nginx", "-v"])),
        ("python", sys.version.split()[0]),
    ] + knobs
    return "\n".join("%-22s %s" % (k + ":", v) for k, v in facts) + "\n"


def gnuplot(script, cwd):
    """Run a gnuplot script in cwd; False (with a note) if gnuplot is missing
    or fails."""
    g = shutil.which("gnuplot")
    if g is None:
        log("gnuplot not found (Debian package gnuplot-nox): no plot")
        return False
    p = subprocess.run([g], input=script, text=True, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        log("gnuplot failed: " + p.stderr.strip())
        return False
    return True


def check_tools():
    """Exit 69 with a hint when a tool the benchmarks need is missing."""
    missing = [t for t in ("wrk", "pgbench", "psql") if shutil.which(t) is None]
    if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
        missing.append("nginx")
    if missing:
        print("bench: missing %s (run scripts/deps)" % ", ".join(missing), file=sys.stderr)
        sys.exit(69)
    if not os.path.exists(LOADGEN):
        subprocess.run(["make", "--no-print-directory", "bench-tools"], cwd=REPO, check=True)
    for s in STAGES:
        if not os.path.exists(bin_path(s)):
            sys.exit("bench: %s missing (make)" % bin_path(s))


def argv_text(stack):
    """The options each stage ran with beyond the run-dir defaults."""
    parts = []
    for name in STAGES:
        more = stack.extra.get(name, [])
        if more:
            parts.append("%s %s" % (name, " ".join(shlex.quote(a) for a in more)))
    if stack.workers > 1:
        parts.append("%d inbox-workers" % stack.workers)
    return "; ".join(parts) or "defaults"
