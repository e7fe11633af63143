"""Steady webhook load and the history of every attempt (the faults suite).

A Load is a few Sender threads, each a well-behaved webhook sender on one
keep-alive connection:

- every logical request has a key of its own, sent as X-Webhook-Id and in
  the body ({"type":"fault.tick","key":KEY,...}), so the dedupe key of the
  stored row names the request;
- a request is retried with the SAME key and body (backoff 50 ms doubling
  to 500 ms) until it gets 202, or the run ends: a 503, a refused or reset
  connection or a timeout are all "indeterminate" -- the event may or may
  not be stored, and the dedupe key makes the retry safe;
- any other status (400, 404, 429, ...) is a definite refusal: the request
  is not retried, and the checker reports it (this load never deserves one).

Every attempt is appended to the History, with monotonic send and answer
times; the checker works on nothing else.
"""

import collections
import http.client
import json
import socket
import threading
import time

from harness import scaled

# One HTTP exchange.  status: the HTTP status, or None when no answer came
# (refused, reset, closed, timed out; error says which).  event_id and
# accepted: from a 202's body.
Attempt = collections.namedtuple(
    "Attempt", "key client t_send t_answer status event_id accepted error")

BACKOFF_MIN = 0.05
BACKOFF_MAX = 0.5
RETRY_STATUSES = (503,)        # "not confirmed": retry with the same key


def indeterminate(a):
    """An attempt that tells nothing about whether its event is stored."""
    return a.status is None or a.status in RETRY_STATUSES


class History:
    """Append-only list of Attempts, shared by the Sender threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.attempts = []

    def add(self, a):
        with self._lock:
            self.attempts.append(a)

    def snapshot(self):
        with self._lock:
            return list(self.attempts)

    def acks_sent_since(self, t):
        """How many attempts sent at or after t (monotonic) were answered 202.
        Attempts are appended when answered, so scan back from the end."""
        n = 0
        with self._lock:
            for a in reversed(self.attempts):
                if a.t_answer < t:
                    break
                if a.status == 202 and a.t_send >= t:
                    n += 1
        return n


class Sender(threading.Thread):
    """One client: a new key every `interval` seconds (no catch-up burst
    after an outage), each delivered with retries before the next."""

    def __init__(self, idx, port, ws, interval, history, halt, prefix, timeout):
        super().__init__(daemon=True, name="sender-%d" % idx)
        self.idx, self.port, self.interval = idx, port, interval
        self.history, self.halt, self.prefix, self.timeout = history, halt, prefix, timeout
        self.path = "/api/v1/webhooks/generic/%s?source=faults" % ws
        self.conn = None
        self.n = 0

    def run(self):
        next_t = time.monotonic()
        while not self.halt.is_set():
            now = time.monotonic()
            if now < next_t and self.halt.wait(next_t - now):
                break
            next_t = max(next_t + self.interval, time.monotonic() - self.interval)
            self.n += 1
            self.deliver("%s-c%d-%d" % (self.prefix, self.idx, self.n))
        self._close()

    def deliver(self, key):
        body = json.dumps({"type": "fault.tick", "key": key, "client": self.idx,
                           "n": self.n}).encode()
        backoff = BACKOFF_MIN
        while True:
            a = self.attempt(key, body)
            self.history.add(a)
            if a.status is not None and a.status not in RETRY_STATUSES:
                return                      # 202, or a definite refusal
            if self.halt.wait(backoff):
                return                      # the run is over: key left as it is
            backoff = min(backoff * 2, BACKOFF_MAX)

    def attempt(self, key, body):
        """One POST on the keep-alive connection (reopened after any error)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        t0 = time.monotonic()
        try:
            self.conn.request("POST", self.path, body=body, headers={
                "Content-Type": "application/json", "X-Webhook-Id": key})
            resp = self.conn.getresponse()
            data = resp.read()
            if resp.will_close:
                self._close()
        except (OSError, http.client.HTTPException, socket.timeout) as e:
            self._close()
            return Attempt(key, self.idx, t0, time.monotonic(), None, None, None,
                           type(e).__name__)
        t1 = time.monotonic()
        event_id = accepted = error = None
        if resp.status == 202:
            try:
                doc = json.loads(data)
                event_id, accepted = doc["event_id"], doc["accepted"]
                if not isinstance(event_id, str) or not isinstance(accepted, bool):
                    raise ValueError("bad types")
            except (ValueError, KeyError, TypeError):
                error = "bad 202 body: %r" % data[:200]
        elif resp.status not in RETRY_STATUSES:
            error = "unexpected answer %d: %r" % (resp.status, data[:200])
        return Attempt(key, self.idx, t0, t1, resp.status, event_id, accepted, error)

    def _close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None


class Load:
    """`clients` Senders sharing `rate` new keys a second against ws."""

    def __init__(self, port, ws, rate, clients, prefix):
        self.history = History()
        self.halt = threading.Event()
        interval = clients / float(rate)
        # longer than ingest-httpd's --ack-timeout (5 s): a slow commit is
        # answered 503 by the server rather than cut short here
        timeout = scaled(8)
        self.senders = [Sender(i, port, ws, interval, self.history, self.halt, prefix, timeout)
                        for i in range(clients)]
        self.t_start = None

    def start(self):
        self.t_start = time.monotonic()
        for s in self.senders:
            s.start()

    def stop(self):
        """Stop sending; a key being retried is left indeterminate."""
        self.halt.set()
        for s in self.senders:
            s.join(scaled(15))
        return time.monotonic()

    def wait_acks_since(self, t, n=5, timeout=30.0):
        """Until n attempts sent at or after t got 202; False on timeout
        (unscaled seconds, scaled here)."""
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            if self.history.acks_sent_since(t) >= n:
                return True
            time.sleep(0.02)
        return False
