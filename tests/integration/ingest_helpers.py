"""Shared helpers for the ingest integration tests (ingest-httpd + inbox-writer).

Not a test module itself (run.py only collects test_*.py).

    p = Pipeline(db)                      # inbox-writer + ingest-httpd on a fresh run dir
    st, hdrs, body = p.post(ws, b'{"a":1}', query="source=stripe",
                            headers={"X-Webhook-Id": "evt_1"})
    row = inbox_row(db, json.loads(body)["event_id"])
"""

import http.client
import json
import os
import re
import shlex
import socket
import subprocess
import time
import uuid

from harness import (Stage, bin_path, free_port, http_request, scaled, tmpdir,
                     wait_until)

WEBHOOK = "/api/v1/webhooks/generic/"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
JSON_WS = " \t\r\n"


def expected_payload(body):
    """The payload text the contract promises for a request body (str or
    bytes): surrounding JSON whitespace dropped, CR/LF/TAB between tokens
    turned into spaces.  (In valid JSON these bytes occur only between
    tokens, so every one of them is replaced.)"""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    body = body.strip(JSON_WS)
    return body.replace("\r", " ").replace("\n", " ").replace("\t", " ")


def webhook_path(ws, query=None):
    return WEBHOOK + ws + ("?" + query if query is not None else "")


def start_writer(db, run_dir, extra=(), **kw):
    return Stage("inbox-writer", ["--db", db.conninfo, "--run-dir", run_dir] + list(extra), **kw)


def start_httpd(run_dir=None, extra=(), port=None, **kw):
    port = port or free_port()
    args = ["--listen", "127.0.0.1:%d" % port]
    if run_dir is not None:
        args += ["--run-dir", run_dir]
    st = Stage("ingest-httpd", args + list(extra), **kw)
    st.port = port
    return st


def wait_ready(port, timeout=10.0):
    """Until GET /readyz answers 200 (the writer answers pings)."""
    def ready():
        try:
            return http_request(port, "GET", "/readyz", timeout=2)[0] == 200
        except OSError:
            return False
    wait_until(ready, timeout=timeout, interval=0.05,
               message="ingest-httpd on port %d not ready" % port)


class Pipeline:
    """inbox-writer and ingest-httpd talking over a fresh run dir."""

    def __init__(self, db, writer=True, httpd_args=(), writer_args=(), ready=True):
        self.db = db
        self.run_dir = tmpdir("run")
        self.writer_args = list(writer_args)
        self.writer = start_writer(db, self.run_dir, self.writer_args) if writer else None
        self.httpd = start_httpd(self.run_dir, httpd_args)
        self.port = self.httpd.port
        if writer and ready:
            wait_ready(self.port)

    def start_writer(self, extra=None):
        self.writer = start_writer(self.db, self.run_dir,
                                   self.writer_args if extra is None else extra)
        return self.writer

    def post(self, ws, body, query=None, headers=None, timeout=10.0):
        return http_request(self.port, "POST", webhook_path(ws, query), body,
                            headers=headers, timeout=timeout)

    def logs(self):
        out = "--- ingest-httpd stderr:\n" + self.httpd.stderr_text()
        if self.writer:
            out += "\n--- inbox-writer stderr:\n" + self.writer.stderr_text()
        return out

    def stop(self):
        for s in (self.httpd, self.writer):
            if s is not None:
                s.stop(timeout=5)


def post_with_header_list(port, path, body, header_list, timeout=10.0):
    """POST with headers given as a list of (name, value) pairs, so a name
    may repeat; returns (status, lower-cased headers, body)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(timeout))
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for k, v in header_list:
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {}
        for k, v in resp.getheaders():
            k = k.lower()
            hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
        return resp.status, hdrs, data
    finally:
        conn.close()


INBOX_COLS = ("id", "workspace_id", "source_kind", "event_type", "role",
              "source_identifier", "dedupe_key", "headers", "payload", "status")


def inbox_row(db, event_id):
    """The event_inbox row with this id as a dict (headers parsed from its
    jsonb, payload as payload::text), or None."""
    rows = db.query("select id, workspace_id, source_kind, event_type, role, "
                    "source_identifier, dedupe_key, headers::text, payload::text, status "
                    "from infonchat.event_inbox where id = %s", event_id)
    if not rows:
        return None
    d = dict(zip(INBOX_COLS, rows[0]))
    d["headers"] = json.loads(d["headers"])
    return d


def inbox_count(db, ws):
    return int(db.value("select count(*) from infonchat.event_inbox where workspace_id = %s", ws))


def parse_response(raw):
    """Split raw bytes holding HTTP/1.1 responses (with Content-Length) into
    a list of (status, lower-cased headers, body); interim 1xx responses
    included.  Stops at the first incomplete one."""
    out = []
    while raw:
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            break
        head = raw[:end].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3}) ", head[0] + " ")
        if not m:
            break
        status = int(m.group(1))
        hdrs = {}
        for ln in head[1:]:
            k, _, v = ln.partition(":")
            k = k.strip().lower()
            v = v.strip()
            hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
        n = int(hdrs.get("content-length", "0")) if status >= 200 else 0
        body = raw[end + 4:end + 4 + n]
        if len(body) < n:
            break
        out.append((status, hdrs, body))
        raw = raw[end + 4 + n:]
    return out


def recv_until(sock, pred, timeout):
    """Read from sock until pred(bytes so far) or EOF or timeout (scaled);
    return what was read."""
    deadline = time.monotonic() + scaled(timeout)
    data = b""
    while not pred(data):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            c = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not c:
            break
        data += c
    return data


def run_cli(name, args, env=None, input=None, timeout=10.0, stdin=None):
    """Run a project program to completion (no readiness fd); return
    CompletedProcess with bytes stdout/stderr. stdin: an open file to read
    instead of input (a regular file is all there at once; a pipe is read
    as it comes)."""
    full_env = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    argv = shlex.split(os.environ.get("INFONCHAT_WRAP", "")) + [bin_path(name)] + list(args)
    more = {"stdin": stdin} if stdin is not None else {"input": input}
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=full_env, timeout=scaled(timeout), **more)


def new_key(prefix="k"):
    return "%s-%s" % (prefix, uuid.uuid4().hex)
