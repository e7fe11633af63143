"""Helpers for the infonchat integration tests (Python 3 standard library only).

    from harness import Cluster, Stage, http_request, raw_http, free_port, make_workspace

    def setUpModule():
        global db
        db = Cluster()                       # throwaway PostgreSQL, migrated

    def tearDownModule():
        db.stop()

    class T(unittest.TestCase):
        def test_x(self):
            ws = make_workspace(db)
            port = free_port()
            w = Stage("inbox-writer", ["--db", db.conninfo, "--run-dir", db.run_dir])
            h = Stage("ingest-httpd", ["--listen", "127.0.0.1:%d" % port,
                                       "--db", db.conninfo, "--run-dir", db.run_dir])
            try:
                st, hdrs, body = http_request(port, "POST",
                                              "/api/v1/webhooks/generic/" + ws, b'{"a":1}')
                self.assertEqual(st, 202, h.stderr_text())
            finally:
                h.stop(); w.stop()

Environment:
    INFONCHAT_BIN           directory of the binaries under test (default: <repo>/bin),
                            e.g. a sanitizer build
    INFONCHAT_WRAP          command prefix for every Stage, e.g. "valgrind -q --error-exitcode=99"
    INFONCHAT_TIMEOUT_SCALE multiply every timeout by this (slow builds, valgrind)
    INFONCHAT_KEEP_TMP=1    keep the temporary directories (clusters, logs) for inspection

Root: PostgreSQL refuses to run as root; scripts/pg-tmp then runs the server as
the user "postgres".  The temporary directories made here are therefore mode
0711 so that postgres can reach the cluster directory inside.
"""

import atexit
import csv
import datetime
import decimal
import http.client
import io
import json
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

__all__ = [
    "REPO", "BIN_DIR", "Cluster", "Stage", "StageError", "QueryError",
    "http_request", "raw_http", "free_port", "make_workspace", "sql_literal",
    "wait_until", "scaled", "tmpdir", "bin_path", "have_bin", "stop_session",
]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.path.abspath(os.environ.get("INFONCHAT_BIN") or os.path.join(REPO, "bin"))
SCRIPTS = os.path.join(REPO, "scripts")
IS_ROOT = os.geteuid() == 0
KEEP_TMP = os.environ.get("INFONCHAT_KEEP_TMP", "") not in ("", "0")


def scaled(seconds):
    """A timeout multiplied by $INFONCHAT_TIMEOUT_SCALE (default 1)."""
    try:
        f = float(os.environ.get("INFONCHAT_TIMEOUT_SCALE", "1") or 1)
    except ValueError:
        f = 1.0
    return seconds * max(f, 0.01)


# ---------------------------------------------------------------------------
# temporary directories and cleanup

_session_dir = None
_live_clusters = set()
_live_stages = set()


def _session_root():
    global _session_dir
    if _session_dir is None:
        # Short paths under /tmp: unix socket paths (PostgreSQL's, ZeroMQ's
        # ipc://) must fit in 107 bytes.
        _session_dir = tempfile.mkdtemp(prefix="infonchat-it-", dir="/tmp")
        os.chmod(_session_dir, 0o711)
    return _session_dir


def tmpdir(prefix="t"):
    """A fresh directory under this run's temporary root (removed at exit)."""
    d = tempfile.mkdtemp(prefix=prefix + "-", dir=_session_root())
    os.chmod(d, 0o711 if IS_ROOT else 0o700)
    return d


@atexit.register
def _cleanup():
    for s in list(_live_stages):
        try:
            s.stop(timeout=scaled(5))
        except Exception:
            pass
    for c in list(_live_clusters):
        try:
            c.stop()
        except Exception:
            pass
    if _session_dir and not KEEP_TMP:
        shutil.rmtree(_session_dir, ignore_errors=True)


def wait_until(predicate, timeout=10.0, interval=0.05, message=None):
    """Call predicate() until it returns a true value (returned) or timeout
    (scaled) passes (AssertionError)."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(message or "condition not met within %.1fs" % scaled(timeout))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# PostgreSQL

class QueryError(Exception):
    """psql failed; .stderr holds its messages."""

    def __init__(self, message, stderr=""):
        super().__init__(message)
        self.stderr = stderr


def sql_literal(v):
    """v as an SQL literal (standard_conforming_strings on, which Cluster
    sets).  None -> NULL; bool, int, float, Decimal as such; bytes -> bytea;
    dict/list -> JSON text; everything else -> its str() quoted."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return "'%s'::float8" % repr(v)
        return repr(v)
    if isinstance(v, decimal.Decimal):
        return "'%s'::numeric" % v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "'\\x%s'::bytea" % bytes(v).hex()
    if isinstance(v, (dict, list)):
        v = json.dumps(v)
    elif isinstance(v, (datetime.datetime, datetime.date)):
        v = v.isoformat()
    else:
        v = str(v)
    if "\0" in v:
        raise ValueError("PostgreSQL text cannot hold a NUL character")
    return "'" + v.replace("'", "''") + "'"


def _interpolate(sql, args):
    """Replace each %s in sql by the next argument as a literal; %% is %."""
    if not args:
        return sql
    out, i, n = [], 0, 0
    while True:
        j = sql.find("%", i)
        if j < 0:
            out.append(sql[i:])
            break
        out.append(sql[i:j])
        nxt = sql[j + 1:j + 2]
        if nxt == "%":
            out.append("%")
        elif nxt == "s":
            if n >= len(args):
                raise ValueError("more %s placeholders than arguments")
            out.append(sql_literal(args[n]))
            n += 1
        else:
            raise ValueError("bad placeholder %%%s (use %%s, or %%%% for %%)" % nxt)
        i = j + 2
    if n != len(args):
        raise ValueError("%d arguments for %d %%s placeholders" % (len(args), n))
    return "".join(out)


_NULL = "\x1eNULL\x1e"   # what psql prints for NULL (cannot be mistaken for data in practice)

# query() reads psql's CSV: let a value be as large as a payload can be
# (the csv module's default limit is 128 KiB).
csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))


class Cluster:
    """A throwaway PostgreSQL cluster (scripts/pg-tmp) in a fresh temporary
    directory, migrated with scripts/migrate.

    .conninfo   "host=DIR port=PORT dbname=postgres user=postgres"
    .dir        the cluster's directory (data/, log, socket)
    .run_dir    an empty directory meant for --run-dir (ipc sockets)
    .port       the TCP port on 127.0.0.1 when tcp=True, else None
    """

    def __init__(self, tcp=False, port=None, migrate=True):
        self.base = tmpdir("pg")
        self.dir = os.path.join(self.base, "pg")
        self.run_dir = os.path.join(self.base, "run")
        os.mkdir(self.run_dir)
        self.port = port or (free_port() if tcp else None)
        self.conninfo = None
        self._start()
        _live_clusters.add(self)
        if migrate:
            self.migrate()

    def _start(self):
        cmd = [os.path.join(SCRIPTS, "pg-tmp"), "start", self.dir]
        if self.port:
            cmd.append(str(self.port))
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=scaled(120))
        if p.returncode != 0:
            raise RuntimeError("pg-tmp start failed (%d): %s" % (p.returncode, p.stderr.strip()))
        self.conninfo = p.stdout.strip().splitlines()[-1]

    def migrate(self):
        p = subprocess.run([os.path.join(SCRIPTS, "migrate"), self.conninfo],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=scaled(120))
        if p.returncode != 0:
            raise RuntimeError("migrate failed (%d): %s" % (p.returncode, p.stderr.strip()))

    @property
    def log_path(self):
        return os.path.join(self.dir, "log")

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def psql(self, script, timeout=60):
        """Run an psql script (stdin) with ON_ERROR_STOP; return its stdout.
        Raises QueryError."""
        env = dict(os.environ, PGCLIENTENCODING="UTF8", PGAPPNAME="infonchat-tests")
        for k in ("PGOPTIONS", "PGSERVICE", "PGSERVICEFILE"):
            env.pop(k, None)
        p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo, "-f", "-"],
                           input=script.encode("utf-8"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=scaled(timeout))
        err = p.stderr.decode("utf-8", "replace")
        if p.returncode != 0:
            raise QueryError("psql failed (%d): %s" % (p.returncode, err.strip()), err)
        return p.stdout.decode("utf-8")

    def query(self, sql, *args, timeout=60):
        """Rows of sql as a list of lists of str (None for NULL).  %s in sql
        are replaced by args as SQL literals (then write a literal % as %%).
        Several statements may be given; their rows are concatenated."""
        script = ("set standard_conforming_strings = on;\n"
                  "\\pset format csv\n\\pset tuples_only on\n\\pset null '\\x1eNULL\\x1e'\n"
                  + _interpolate(sql, args) + "\n;\n")
        out = self.psql(script, timeout=timeout)
        rows = []
        for rec in csv.reader(io.StringIO(out, newline="")):
            rows.append([None if f == _NULL else f for f in rec])
        return rows

    def value(self, sql, *args, **kw):
        """The single value of a one-row, one-column query (None if no row)."""
        rows = self.query(sql, *args, **kw)
        if not rows:
            return None
        if len(rows) != 1 or len(rows[0]) != 1:
            raise QueryError("expected one value, got %r" % (rows,))
        return rows[0][0]

    def execute(self, sql, *args, timeout=60):
        """Run sql (any number of statements), discarding results."""
        self.psql("set standard_conforming_strings = on;\n\\o /dev/null\n"
                  + _interpolate(sql, args) + "\n;\n", timeout=timeout)

    def _pgtmp(self, *args):
        p = subprocess.run([os.path.join(SCRIPTS, "pg-tmp")] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=scaled(120))
        if p.returncode != 0:
            raise RuntimeError("pg-tmp %s failed (%d): %s" % (args[0], p.returncode, p.stderr.strip()))
        return p.stdout

    def stop_server(self, immediate=False):
        """Stop the server (fast, or immediate = crash) but keep the cluster."""
        self._pgtmp("stop", self.dir, *(["--immediate"] if immediate else []))

    def start_server(self):
        """Start it again after stop_server(); same conninfo."""
        old = self.conninfo
        self._start()
        if self.conninfo != old:
            raise RuntimeError("conninfo changed over a restart: %s -> %s" % (old, self.conninfo))

    def restart(self, immediate=False):
        self.stop_server(immediate=immediate)
        self.start_server()

    def is_running(self):
        p = subprocess.run([os.path.join(SCRIPTS, "pg-tmp"), "status", self.dir],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return p.returncode == 0

    def stop(self):
        """Stop the server and remove the cluster (unless INFONCHAT_KEEP_TMP)."""
        if self not in _live_clusters:
            return
        _live_clusters.discard(self)
        try:
            self._pgtmp("stop", self.dir)
        finally:
            if not KEEP_TMP:
                shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def scan_counts(cluster, table, index):
    """PostgreSQL's cumulative counters for table (e.g. 'infonchat.event_inbox')
    and one of its indexes: {"seq_read": rows read by sequential scans,
    "updated": rows updated, "index_read": index entries read}. A backend
    reports its counts when idle, up to about 10 s late (PostgreSQL 15)."""
    r = cluster.query(
        "select t.seq_tup_read, t.n_tup_upd, i.idx_tup_read"
        " from pg_stat_user_tables t join pg_stat_user_indexes i on i.relid = t.relid"
        " where t.relid = %s::regclass and i.indexrelname = %s", table, index)[0]
    return {"seq_read": int(r[0]), "updated": int(r[1]), "index_read": int(r[2])}


def make_workspace(cluster, name=None, require_signature=None):
    """Insert a workspace with a fresh id (and only (id, name) unless
    require_signature is given); return the id as a lower-case string."""
    wid = str(uuid.uuid4())
    if require_signature is None:
        cluster.execute("insert into infonchat.workspaces(id, name) values (%s, %s)",
                        wid, name or "test-" + wid[:8])
    else:
        cluster.execute("insert into infonchat.workspaces(id, name, require_signature) "
                        "values (%s, %s, %s)", wid, name or "test-" + wid[:8],
                        bool(require_signature))
    return wid


# ---------------------------------------------------------------------------
# project programs

class StageError(Exception):
    pass


# The five programs, downstream first: each finds the next one's socket bound.
STAGES = ("router", "outbox-relay", "inbox-worker", "inbox-writer", "ingest-httpd")


def stage_args(name, cluster, port=None, extra=()):
    """The arguments that run stage name against cluster on its run dir:
    --db for the database stages, --listen 127.0.0.1:port for ingest-httpd
    (a free port when none is given), then extra."""
    a = ["--run-dir", cluster.run_dir]
    if name in ("outbox-relay", "inbox-worker", "inbox-writer"):
        a += ["--db", cluster.conninfo]
    if name == "ingest-httpd":
        a += ["--listen", "127.0.0.1:%d" % (port or free_port())]
    return a + list(extra)


def bin_path(name):
    return os.path.join(BIN_DIR, name)


def have_bin(name):
    p = bin_path(name)
    return os.path.isfile(p) and os.access(p, os.X_OK)


class Stage:
    """One project program from BIN_DIR, run with args and env.

    stderr goes to a file (.stderr_path, .stderr_text()).  With notify=True
    (the default) "--notify-fd N" is appended and the constructor waits
    (notify_timeout, scaled) for the newline; if the program exits or the
    time runs out first, StageError is raised (with its stderr).
    stdin/stdout: as for subprocess.Popen (default: /dev/null and a file
    .stdout_path); pass subprocess.PIPE for debug-pipe tests.
    env: added to os.environ; a None value removes the variable.
    """

    def __init__(self, name, args=(), env=None, notify=True, notify_timeout=10.0,
                 stdin=None, stdout=None, cwd=None, log_dir=None):
        self.name = name
        self.path = bin_path(name)
        if not os.path.isfile(self.path):
            raise StageError("%s not found (build with make, or set INFONCHAT_BIN)" % self.path)
        self.log_dir = log_dir or tmpdir("log-" + name)
        self.stderr_path = os.path.join(self.log_dir, name + ".stderr")
        self.stdout_path = None
        full_env = dict(os.environ)
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = str(v)
        argv = shlex.split(os.environ.get("INFONCHAT_WRAP", "")) + [self.path] + [str(a) for a in args]
        rfd = wfd = None
        if notify:
            rfd, wfd = os.pipe()
            argv += ["--notify-fd", str(wfd)]
        self._stderr_file = open(self.stderr_path, "wb")
        out_file = None
        if stdout is None:
            self.stdout_path = os.path.join(self.log_dir, name + ".stdout")
            out_file = open(self.stdout_path, "wb")
            stdout = out_file
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=stdout, stderr=self._stderr_file, env=full_env, cwd=cwd,
                pass_fds=(wfd,) if notify else (), start_new_session=True)
        except Exception:
            for fd in (rfd, wfd):
                if fd is not None:
                    os.close(fd)
            self._stderr_file.close()
            raise
        finally:
            if out_file:
                out_file.close()
        _live_stages.add(self)
        self.pid = self.proc.pid
        if notify:
            os.close(wfd)
            try:
                self._wait_ready(rfd, scaled(notify_timeout))
            except BaseException:
                self.stop(timeout=scaled(5))
                raise
            finally:
                os.close(rfd)

    def _wait_ready(self, fd, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StageError("%s: not ready within %.1fs\n%s" % (self.name, timeout, self.stderr_text()))
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 64)
            if not chunk:
                # every copy of the write end is closed: the program exited
                # (or closed the fd without writing)
                rc = self.proc.poll()
                if rc is None:
                    try:
                        rc = self.proc.wait(timeout=scaled(2))
                    except subprocess.TimeoutExpired:
                        rc = "still running"
                raise StageError("%s: closed its notify fd without a newline (exit status %s)\n%s"
                                 % (self.name, rc, self.stderr_text()))
            buf += chunk

    @property
    def stdin(self):
        return self.proc.stdin

    @property
    def stdout(self):
        return self.proc.stdout

    def stderr_text(self):
        try:
            self._stderr_file.flush()
        except Exception:
            pass
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout_text(self):
        if not self.stdout_path:
            raise StageError("stdout was not captured to a file")
        with open(self.stdout_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def poll(self):
        return self.proc.poll()

    def running(self):
        return self.proc.poll() is None

    def kill(self, sig=signal.SIGTERM):
        """Send sig to the program (no-op if it has exited)."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout=10.0):
        """Wait for the exit (timeout scaled); return the exit status
        (negative: killed by that signal).  Raises subprocess.TimeoutExpired."""
        rc = self.proc.wait(timeout=scaled(timeout))
        self._done()
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """sig, wait up to timeout, then SIGKILL; return the exit status."""
        if self.proc.poll() is None:
            self.kill(sig)
            try:
                self.proc.wait(timeout=scaled(timeout))
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait()
        self._done()
        return self.proc.returncode

    def _done(self):
        _live_stages.discard(self)
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                try:
                    f.close()
                except Exception:
                    pass
        try:
            self._stderr_file.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------
# network

def stop_session(proc):
    """End a process started with start_new_session=True (a shell pipeline)
    and everything in its process group: SIGTERM, then SIGKILL if it is not
    gone within 10 s (scaled)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=scaled(10))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port, method, path, body=b"", headers=None, timeout=10.0, host="127.0.0.1"):
    """One HTTP/1.1 request; return (status, headers with lower-cased names
    (repeats joined with ", "), body bytes).  body: bytes, str (UTF-8) or
    dict/list (sent as JSON)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode("utf-8")
    elif isinstance(body, str):
        body = body.encode("utf-8")
    conn = http.client.HTTPConnection(host, port, timeout=scaled(timeout))
    try:
        conn.request(method, path, body=body if (body or method not in ("GET", "HEAD")) else None,
                     headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {}
        for k, v in resp.getheaders():
            k = k.lower()
            hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
        return resp.status, hdrs, data
    finally:
        conn.close()


def raw_http(port, data, read_timeout=2.0, host="127.0.0.1", half_close=False, connect_timeout=5.0):
    """Send data as is on a new TCP connection, then read until the server
    closes or read_timeout (scaled) passes with nothing more arriving; return
    all bytes read.  half_close: shut down our sending side after data."""
    s = socket.create_connection((host, port), timeout=scaled(connect_timeout))
    try:
        if data:
            s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        s.settimeout(scaled(read_timeout))
        chunks = []
        while True:
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not c:
                break
            chunks.append(c)
        return b"".join(chunks)
    finally:
        s.close()


class ZmtpPull:
    """A ZeroMQ PULL socket bound on ipc://path, in plain Python: the ZMTP 3.0
    wire protocol with the NULL mechanism (what libzmq speaks on ipc:// by
    default), enough to see exactly what a stage PUSHes. One peer at a time;
    a background thread accepts it and collects every message, in order, as
    a list of frames (bytes).

        pull = ZmtpPull(path); ...; pull.wait_peer(); ...; pull.messages()
    """

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self._lock = threading.Lock()
        self._msgs = []
        self._peer = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def endpoint(self):
        return "ipc://" + self.path

    def _recv(self, c, n):
        out = b""
        while len(out) < n:
            chunk = c.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def _frame(self, c):
        flags = self._recv(c, 1)[0]
        size = int.from_bytes(self._recv(c, 8 if flags & 0x02 else 1), "big")
        return flags, self._recv(c, size)

    def _run(self):
        while not self._closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                # greeting: signature, version 3.0, mechanism NULL, not as-server
                c.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00"
                          + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31)
                greeting = self._recv(c, 64)
                if greeting[0] != 0xFF or greeting[9] != 0x7F or greeting[12:16] != b"NULL":
                    raise EOFError
                ready = b"\x05READY" + b"\x0bSocket-Type" + (4).to_bytes(4, "big") + b"PULL"
                c.sendall(b"\x04" + bytes([len(ready)]) + ready)
                flags, _ = self._frame(c)            # the peer's READY
                if not flags & 0x04:
                    raise EOFError
                with self._lock:
                    self._peer = True
                parts = []
                while True:
                    flags, body = self._frame(c)
                    if flags & 0x04:
                        continue                     # a command (PING and the like)
                    parts.append(body)
                    if not flags & 0x01:             # no MORE: the message is whole
                        with self._lock:
                            self._msgs.append(parts)
                        parts = []
            except (EOFError, OSError):
                pass
            finally:
                with self._lock:
                    self._peer = False
                c.close()

    def wait_peer(self, timeout=10.0):
        wait_until(lambda: self._peer, timeout=timeout, message="no peer connected to " + self.path)

    def messages(self):
        with self._lock:
            return list(self._msgs)

    def close(self):
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
