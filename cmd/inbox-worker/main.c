/*
 * inbox-worker: route pending inbox events to agent runs and the outbox,
 * each batch in one transaction. See inbox-worker(1).
 *
 * Work comes from hints (inbox envelopes that inbox-writer pushes after its
 * commits) and from a sweep of event_inbox at start, every --sweep-interval
 * and back to back while a sweep finds a full batch, so a lost hint delays
 * an event but never strands it. Several database connections ("lanes")
 * each have a batch in flight. After a batch commits, its outbox envelopes
 * are passed on to outbox-relay as hints.
 *
 * Three ways to run: the service (input socket), a debug pipe (--in -:
 * envelope lines on stdin name the events to route), and --replay.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <zmq.h>

#include "clock.h"
#include "db.h"
#include "emit.h"
#include "endpoint.h"
#include "intake.h"
#include "lines.h"
#include "log.h"
#include "replay.h"
#include "retention.h"
#include "route.h"
#include "stage.h"

#define MAX_LANES 8
#define PAUSE_MIN_MS 200
#define PAUSE_MAX_MS 10000

struct config {
	struct route_cfg route;
	long long connections;
	long long sweep_ms;
	long long linger_ms;
	long long max_line;
	long long retention_days;
	struct replay replay;
};

static const struct stage_option options[] = {
	{ "batch-max", 'b', "N", "most events routed in one transaction (default 500)" },
	{ "connections", 'c', "N", "database connections, each with a batch in flight (default 2)" },
	{ "max-attempts", 0, "N", "failed attempts after which an event is dead (default 5)" },
	{ "retry-delay", 0, "MS", "wait after a first failure, doubled per failure, at most 1 h (default 1000)" },
	{ "sweep-interval", 0, "MS", "look for pending events without a hint this often (default 1000)" },
	{ "linger", 0, "MS", "with no batch in flight, wait this long after a first hint for more (default 5)" },
	{ "max-line", 0, "BYTES", "longest hint or input line, k/M suffixes (default 4M)" },
	{ "retention-days", 0, "N", "delete processed events and published messages older than N days, N >= 7 or 0 for never (default 30)" },
	{ "replay", 0, NULL, "route the stored events the filters below choose again, then exit" },
	{ "workspace", 0, "UUID", "replay only this workspace's events" },
	{ "since", 0, "TIME", "replay only events received at or after TIME (RFC 3339)" },
	{ "until", 0, "TIME", "replay only events received before TIME (RFC 3339)" },
	{ "role", 0, "PATTERN", "replay only events with this role, or a role starting with PATTERN less its trailing *" },
	{ "status", 0, "LIST", "replay only events in these states: pending, processed, dead, comma-separated (default processed,dead)" },
};

static int
set_option(void *ctx, const struct stage_option *o, const char *arg, const char **err)
{
	struct config *c = ctx;
	int rc;

	*err = NULL;
	if (strcmp(o->name, "batch-max") == 0)
		return stage_number(arg, 1, 10000, &c->route.batch_max);
	if (strcmp(o->name, "connections") == 0)
		return stage_number(arg, 1, MAX_LANES, &c->connections);
	if (strcmp(o->name, "max-attempts") == 0)
		return stage_number(arg, 1, 1000, &c->route.max_attempts);
	if (strcmp(o->name, "retry-delay") == 0)
		return stage_number(arg, 1, 3600000, &c->route.retry_delay_ms);
	if (strcmp(o->name, "sweep-interval") == 0)
		return stage_number(arg, 10, 3600000, &c->sweep_ms);
	if (strcmp(o->name, "linger") == 0)
		return stage_number(arg, 0, 1000, &c->linger_ms);
	if (strcmp(o->name, "max-line") == 0)
		return stage_size(arg, 1024, 1LL << 30, &c->max_line);
	if (strcmp(o->name, "retention-days") == 0) {
		/* Under a week, a provider's retry could outlive its dedupe key. */
		if (stage_number(arg, 0, 36500, &c->retention_days) < 0 ||
		    (c->retention_days > 0 && c->retention_days < RETENTION_MIN_DAYS)) {
			*err = "want 0 (never delete) or 7 to 36500 days";
			return -1;
		}
		return 0;
	}
	rc = replay_option(&c->replay, o->name, arg, err);
	return rc == 0 ? 0 : -1;
}

/* A lane and what the loop knows about it. */
struct slot {
	struct lane lane;
	int again;                /* its last request must be sent again */
	long long again_at;       /* not before this (ms, monotonic) */
	long pause_ms;
};

struct worker {
	struct config cfg;         /* cfg.route.batch_max: the next batch's size (fit_batch) */
	long long batch_cap;      /* --batch-max */
	const char *conninfo;
	struct slot slots[MAX_LANES];
	int nslots;
	void *in_sock;            /* PULL, or NULL */
	struct hintq q;           /* hints waiting for a lane */
	long long q_since;        /* when q last became non-empty (ms, monotonic) */
	struct buf arena;         /* envelope parser scratch */
	struct emitter em;
	enum route_envelopes envelopes;   /* which a batch returns, for --out */
	struct retention ret;     /* service mode only */
	unsigned long long events, routed, runs, retried, dead, hints, bad_hints;
	size_t missing;           /* --in - / --replay: requested events not in the database */
	long bad_lines;
};

/* Connect a slot's lane, as long as it takes. Returns 0, or -1 when stopped first. */
static int
slot_connect(struct worker *w, struct slot *s)
{
	if (s->lane.conn != NULL)
		return 0;
	s->lane.conn = db_connect_retry(w->conninfo, "inbox-worker", &stage_stop,
	    route_prepare, &w->envelopes);
	return s->lane.conn != NULL ? 0 : -1;
}

/* Take a finished batch: pass its envelopes on, count it, or plan its retry. */
static void
slot_done(struct worker *w, struct slot *s, enum lane_status st)
{
	struct lane *l = &s->lane;

	switch (st) {
	case LANE_OK:
		emit_lines(&w->em, &l->out.envs, l->out.nenvs);
		w->events += l->out.events;
		w->routed += l->out.routed;
		w->runs += l->out.runs;
		w->retried += l->out.retried;
		w->dead += l->out.dead;
		s->again = 0;
		s->pause_ms = 0;
		break;
	case LANE_LOST:
		PQfinish(l->conn);
		l->conn = NULL;
		s->again = 1;
		s->again_at = 0;
		break;
	case LANE_PAUSE:
		s->pause_ms = s->pause_ms ? s->pause_ms * 2 : PAUSE_MIN_MS;
		if (s->pause_ms > PAUSE_MAX_MS)
			s->pause_ms = PAUSE_MAX_MS;
		s->again = 1;
		s->again_at = clock_ms() + s->pause_ms;
		break;
	}
}

/* Send a slot's batch; a lost connection makes it a retry. */
static void
slot_send(struct worker *w, struct slot *s, enum lane_kind kind)
{
	if (lane_send(&s->lane, kind, &w->cfg.route) < 0) {
		s->lane.kind = kind;
		slot_done(w, s, LANE_LOST);
	}
}

/*
 * Run one request to the end on a slot, blocking: reconnect and pause as
 * needed. Returns 0, or -1 when stopped first.
 */
static int
slot_run(struct worker *w, struct slot *s, enum lane_kind kind)
{
	for (;;) {
		enum lane_status st;

		if (slot_connect(w, s) < 0)
			return -1;
		st = lane_run(&s->lane, kind, &w->cfg.route);
		slot_done(w, s, st);
		if (st == LANE_OK)
			return 0;
		if (st == LANE_PAUSE)
			db_sleep(s->pause_ms, &stage_stop);
		if (stage_stop)
			return -1;
	}
}

/* ---- the service: hints from a socket, sweeps, several lanes ------------ */

struct sweep {
	long long next;           /* the next timed sweep (ms, monotonic) */
	int backlog;              /* the last sweep to finish was full: every idle lane sweeps */
};

/*
 * Batches are sized by bytes as well as by count: a batch's outbox rows
 * (and, on standard output, its result and hints) carry every event's
 * payload, so 500 events of 256 KB were over 100 MB at once. After each
 * batch the next one is sized for about BATCH_BYTES of outbox data, never
 * more events than --batch-max (1 KB payloads stay at --batch-max). The
 * first batch, of sizes unknown, takes at most BATCH_FIRST.
 */
#define BATCH_BYTES (2u << 20)
#define BATCH_FIRST 16

static void
fit_batch(struct worker *w, const struct lane *l)
{
	size_t per, n;

	if (l->out.events == 0 || l->out.bytes == 0)
		return;
	per = l->out.bytes / l->out.events;
	n = per > 0 ? BATCH_BYTES / per : (size_t)w->batch_cap;
	if (n < 1)
		n = 1;
	if (n > (size_t)w->batch_cap)
		n = (size_t)w->batch_cap;
	log_debug("batch done", " events=%zu bytes=%zu next_batch_max=%zu", l->out.events,
	    l->out.bytes, n);
	w->cfg.route.batch_max = (long long)n;
}

static void
finish_slot(struct worker *w, struct slot *s, struct sweep *sw)
{
	enum lane_status st = lane_complete(&s->lane, &w->cfg.route);

	if (st == LANE_OK && s->lane.kind == LANE_SWEEP)
		sw->backlog = s->lane.out.events >= (size_t)w->cfg.route.batch_max;
	if (st == LANE_OK)
		fit_batch(w, &s->lane);
	slot_done(w, s, st);
}

/* Lanes with a batch of hints in flight. */
static int
hint_lanes(const struct worker *w)
{
	int n = 0;

	for (int i = 0; i < w->nslots; i++)
		n += w->slots[i].lane.busy && w->slots[i].lane.kind == LANE_IDS;
	return n;
}

/*
 * With hints queued and no batch of them in flight: how many ms until the
 * first is --linger old and they may go (0: now). -1 when no linger applies.
 */
static long long
linger_left(const struct worker *w, long long now)
{
	long long left;

	if (w->q.n == 0 || hint_lanes(w) > 0)
		return -1;
	left = w->q_since + w->cfg.linger_ms - now;
	return left > 0 ? left : 0;
}

/*
 * What an idle slot without a retry should do now: a sweep when one is due
 * (before hints, so that a steady stream of hints never starves the rows only
 * a sweep finds: retries after their backoff, events whose hint was lost);
 * else hints; else another sweep while there is a backlog. Returns 0 for
 * nothing.
 *
 * Hints go to a second lane only when one is not keeping up (a fifth of
 * --batch-max of them wait): at a moderate rate the hints that arrive while
 * one batch commits make the next batch, which costs the database much less
 * per event than several small batches side by side (each statement has a
 * fixed cost, and concurrent batches contend for the same workspace and
 * agent rows in their foreign key checks and locks).
 *
 * With no batch of hints in flight, hints wait until the first of them is
 * --linger old. At a low rate every event was otherwise a batch of its own,
 * and the wake-ups and statements per event cost more than the routing: at
 * 1,000 events/s on 2 cores this process took 550 us of CPU an event (11 at
 * full load), and what it took from the others showed in ack latency
 * (p99 about 10 ms; 5.5 ms with 5 ms of linger).
 */
static int
pick(const struct worker *w, const struct sweep *sw, long long now, enum lane_kind *kind)
{
	size_t spread = (size_t)w->cfg.route.batch_max / 5;

	if (now >= sw->next)
		*kind = LANE_SWEEP;
	else if (w->q.n > 0 && (w->q.n >= spread || linger_left(w, now) == 0))
		*kind = LANE_IDS;
	else if (sw->backlog)
		*kind = LANE_SWEEP;
	else
		return 0;
	return 1;
}

/* Give an idle slot work: its retry, or what pick() says. Returns 0, or -1 when stopped. */
static int
dispatch(struct worker *w, struct slot *s, struct sweep *sw, long long now)
{
	enum lane_kind kind;

	if (s->again) {
		if (now < s->again_at)
			return 0;
		if (slot_connect(w, s) < 0)
			return -1;
		slot_send(w, s, s->lane.kind);
		return 0;
	}
	if (!pick(w, sw, now, &kind))
		return 0;
	if (slot_connect(w, s) < 0)
		return -1;
	if (kind == LANE_IDS) {
		if (hintq_take(&w->q, &s->lane, (size_t)w->cfg.route.batch_max) > 0)
			slot_send(w, s, LANE_IDS);
		return 0;
	}
	sw->next = now + w->cfg.sweep_ms;
	s->lane.nreq = 0;
	slot_send(w, s, LANE_SWEEP);
	return 0;
}

static int
run_service(struct worker *w)
{
	struct sweep sw = { 0, 0 };

	while (!stage_stop) {
		zmq_pollitem_t pi[2 + MAX_LANES];
		struct slot *busy[MAX_LANES];
		int nb = 0, idle = 0, rc, work_now = 0, rfd = retention_fd(&w->ret);
		long long now = clock_ms(), wait = 1000, rdue = retention_due(&w->ret), linger;
		enum lane_kind kind;

		for (int i = 0; i < w->nslots; i++) {
			struct slot *s = &w->slots[i];

			if (s->lane.busy) {
				pi[1 + nb] = (zmq_pollitem_t){ NULL, PQsocket(s->lane.conn), ZMQ_POLLIN, 0 };
				busy[nb++] = s;
			} else if (s->again) {
				if (s->again_at <= now)
					work_now = 1;
				else if (s->again_at - now < wait)
					wait = s->again_at - now;
			} else {
				idle++;
				if (pick(w, &sw, now, &kind))
					work_now = 1;
			}
		}
		/*
		 * A due sweep is a deadline only for an idle lane: with every lane
		 * busy, the poll waits for one to finish. (Counting it anyway made
		 * the loop spin at 100% CPU from the moment a sweep fell due until
		 * a batch ended, taking the database's CPU on a small machine and
		 * slowing the batches it waited for.)
		 */
		if (idle > 0 && sw.next - now < wait)
			wait = sw.next - now;
		if (idle > 0 && (linger = linger_left(w, now)) >= 0 && linger < wait)
			wait = linger;
		pi[0] = (zmq_pollitem_t){ w->in_sock, 0, w->q.n < w->q.cap ? ZMQ_POLLIN : 0, 0 };
		/* retention last: one batch of it per turn, never ahead of routing */
		pi[1 + nb] = (zmq_pollitem_t){ NULL, rfd, rfd >= 0 ? ZMQ_POLLIN : 0, 0 };
		if (rdue >= 0 && rdue - now < wait)
			wait = rdue - now;
		if (wait < 0)
			wait = 0;
		log_flush();
		rc = zmq_poll(pi, 2 + nb, work_now ? 0 : (long)(wait < 1000 ? wait : 1000));
		if (rc < 0 && errno != EINTR) {
			log_error("poll failed", " err=%s", log_q(zmq_strerror(errno)));
			return -1;
		}
		if (stage_reload) {
			stage_reload = 0;
			log_info("reload requested: nothing to reload, agent_roles are read by every batch", "%s", "");
		}
		if (rc > 0 && (pi[0].revents & ZMQ_POLLIN)) {
			size_t before = w->q.n;
			long got = intake_recv(w->in_sock, &w->q, &w->arena, (size_t)w->cfg.max_line,
			    &w->bad_hints);
			if (got < 0 && errno != EINTR) {
				log_error("cannot receive hints", " err=%s", log_q(zmq_strerror(errno)));
				return -1;
			}
			if (got > 0)
				w->hints += (unsigned long long)got;
			if (before == 0 && w->q.n > 0)
				w->q_since = clock_ms();
		}
		for (int k = 0; k < nb && rc > 0; k++) {
			struct slot *s = busy[k];

			if (!(pi[1 + k].revents & ZMQ_POLLIN))
				continue;
			if (!PQconsumeInput(s->lane.conn) || !PQisBusy(s->lane.conn))
				finish_slot(w, s, &sw);
		}
		if (stage_stop)
			break;
		now = clock_ms();
		for (int i = 0; i < w->nslots; i++) {
			struct slot *s = &w->slots[i];

			if (!s->lane.busy && dispatch(w, s, &sw, now) < 0)
				return 0;
		}
		if (rc > 0 && (pi[1 + nb].revents & ZMQ_POLLIN))
			retention_handle(&w->ret, now);
		retention_step(&w->ret, now);
	}
	/* Draining: finish the batches in flight; queued hints are only hints. */
	for (int i = 0; i < w->nslots; i++)
		if (w->slots[i].lane.busy)
			finish_slot(w, &w->slots[i], &sw);
	return 0;
}

/* ---- the debug pipe: envelope lines on stdin name the events ------------ */

/* Route the events in slot 0's request and say what became of the others. */
static int
pipe_batch(struct worker *w)
{
	struct slot *s = &w->slots[0];
	size_t missing;
	int rc;

	if (slot_run(w, s, LANE_IDS) < 0)
		return -1;
	while ((rc = lane_report(&s->lane, &missing)) == -2) {
		slot_done(w, s, LANE_LOST);
		if (slot_connect(w, s) < 0)
			return -1;
	}
	w->missing += missing;
	s->lane.nreq = 0;
	return 0;
}

static int
run_pipe(struct worker *w)
{
	struct line_reader lr;
	struct slot *s = &w->slots[0];
	int done = 0, rc = 0;

	if (lane_reserve(&s->lane, (size_t)w->cfg.route.batch_max) < 0)
		return -1;
	s->lane.nreq = 0;
	lines_init(&lr, STDIN_FILENO, (size_t)w->cfg.max_line);
	while (!done && !stage_stop) {
		while (s->lane.nreq < (size_t)w->cfg.route.batch_max && !done) {
			const char *line, *why;
			size_t len;
			enum line_result lres = lines_next(&lr, &line, &len);

			if (lres == LINE_OK) {
				struct hint *h = &s->lane.req[s->lane.nreq];

				if (len == 0)
					continue;
				if (hint_parse(line, len, h, &w->arena, &why) < 0) {
					w->bad_lines++;
					log_error("bad envelope line", " line=%ld err=%s", lr.lineno, log_q(why));
					continue;
				}
				h->lineno = lr.lineno;
				s->lane.nreq++;
			} else if (lres == LINE_TOO_LONG) {
				w->bad_lines++;
				log_error("bad envelope line", " line=%ld err=%s", lr.lineno,
				    log_q("longer than --max-line"));
			} else if (lres == LINE_EOF) {
				done = 1;
			} else {
				if (s->lane.nreq > 0 && !lines_ready(&lr))
					break;      /* route what we have rather than wait */
				if (lines_fill(&lr) < 0) {
					if (errno == EINTR)
						continue;
					log_error("cannot read stdin", " err=%s", log_q(strerror(errno)));
					done = 1;
					rc = -1;
				}
			}
		}
		if (s->lane.nreq > 0 && pipe_batch(w) < 0) {
			rc = -1;
			break;
		}
	}
	if (stage_stop && !done)
		rc = -1;
	lines_free(&lr);
	return rc;
}

/* ---- replay ----------------------------------------------------------------- */

static int
run_replay(struct worker *w)
{
	struct slot *s = &w->slots[0];
	PGresult *chosen = NULL, *failed = NULL;
	int n;

	while (chosen == NULL) {
		if (slot_connect(w, s) < 0)
			return -1;
		chosen = replay_mark(s->lane.conn, &w->cfg.replay, &failed);
		if (chosen != NULL)
			break;
		if (!db_connection_lost(s->lane.conn, failed)) {
			log_error("replay refused by the database", " err=%s",
			    log_q(db_error(s->lane.conn, failed)));
			PQclear(failed);
			return -2;
		}
		PQclear(failed);
		slot_done(w, s, LANE_LOST);
	}
	n = PQntuples(chosen);
	log_info("replay: events set pending", " events=%d", n);
	if (lane_reserve(&s->lane, (size_t)w->cfg.route.batch_max) < 0) {
		PQclear(chosen);
		return -1;
	}
	for (int i = 0; i < n && !stage_stop; ) {
		size_t k = 0;

		for (; i < n && k < (size_t)w->cfg.route.batch_max; i++, k++) {
			struct hint *h = &s->lane.req[k];

			snprintf(h->id, sizeof h->id, "%s", PQgetvalue(chosen, i, 0));
			snprintf(h->workspace_id, sizeof h->workspace_id, "%s", PQgetvalue(chosen, i, 1));
			h->lineno = 0;
		}
		s->lane.nreq = k;
		if (slot_run(w, s, LANE_IDS) < 0)
			break;
	}
	log_info("replay done", " events=%d routed=%llu runs=%llu retried=%llu dead=%llu",
	    n, w->routed, w->runs, w->retried, w->dead);
	PQclear(chosen);
	return stage_stop ? -1 : 0;
}

/* ---- setup ---------------------------------------------------------------- */

static int
open_sockets(struct worker *w, void *zctx, const struct endpoint *in,
    const struct endpoint *out)
{
	if (in->kind == EP_BIND || in->kind == EP_CONNECT) {
		/*
		 * Hints are envelopes (~1.5 KB); behind, the worker sweeps, so
		 * queueing more than a batch's worth only costs memory (100,000
		 * queued made 80+ MB of RSS under overload, 2,000 about 5 MB).
		 */
		int hwm = 500;

		w->in_sock = zsock_new(zctx, ZMQ_PULL, 0);
		if (w->in_sock == NULL ||
		    zmq_setsockopt(w->in_sock, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0 ||
		    zsock_attach(w->in_sock, in) < 0) {
			log_error("cannot open input", " in=%s err=%s", endpoint_text(in),
			    log_q(zmq_strerror(errno)));
			return -1;
		}
	}
	if (out->kind == EP_BIND || out->kind == EP_CONNECT) {
		int hwm = 100, one = 1;    /* as outbox-relay's hint queue: a few say "look now" */

		w->em.sock = zsock_new(zctx, ZMQ_PUSH, 100);
		if (w->em.sock == NULL ||
		    zmq_setsockopt(w->em.sock, ZMQ_SNDHWM, &hwm, sizeof hwm) < 0 ||
		    zmq_setsockopt(w->em.sock, ZMQ_IMMEDIATE, &one, sizeof one) < 0 ||
		    zsock_attach(w->em.sock, out) < 0) {
			log_error("cannot open output", " out=%s err=%s", endpoint_text(out),
			    log_q(zmq_strerror(errno)));
			return -1;
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static struct worker w;
	struct stage st = {
		.prog = "inbox-worker",
		.summary = "Route pending inbox events to agent runs and the outbox, each batch in one transaction.",
		.common = STAGE_IN | STAGE_OUT | STAGE_DB | STAGE_RUN_DIR,
		.opts = options,
		.nopts = sizeof options / sizeof options[0],
		.set = set_option,
	};
	struct endpoint in, out;
	const char *mode;
	void *zctx = NULL;
	int rc, status = EX_OK;

	w.cfg.route = (struct route_cfg){ 500, 5, 1000 };
	w.cfg.connections = 2;
	w.cfg.sweep_ms = 1000;
	w.cfg.linger_ms = 5;
	w.cfg.max_line = 4 << 20;
	w.cfg.retention_days = RETENTION_DEFAULT_DAYS;
	replay_init(&w.cfg.replay);
	st.ctx = &w.cfg;
	log_init(st.prog);
	rc = stage_args(&st, argc, argv);
	if (rc != 0)
		return rc > 0 ? EX_OK : EX_USAGE;
	if (w.cfg.replay.any_filter && !w.cfg.replay.on)
		return stage_usage_error(&st, "--workspace, --since, --until, --role and --status go with --replay");
	if (w.cfg.replay.on && st.in != NULL)
		return stage_usage_error(&st, "--replay takes no --in");
	in.kind = EP_NONE;
	if (!w.cfg.replay.on && stage_endpoint(&st, "--in", st.in, "inbox-worker", 1, &in) < 0)
		return EX_USAGE;
	if (stage_endpoint(&st, "--out", st.out, "outbox-relay", 0, &out) < 0)
		return EX_USAGE;
	if (!w.cfg.replay.on && in.kind == EP_NONE)
		return stage_usage_error(&st, "no input: give --run-dir, --in ENDPOINT, --in - or --replay");
	if (stage_signals() < 0)
		return EX_OSERR;

	w.conninfo = st.db;
	w.envelopes = out.kind == EP_STDIO ? ENVELOPES_ALL : ENVELOPES_LAST;
	w.batch_cap = w.cfg.route.batch_max;
	if (w.cfg.route.batch_max > BATCH_FIRST && in.kind != EP_STDIO && !w.cfg.replay.on)
		w.cfg.route.batch_max = BATCH_FIRST;
	retention_init(&w.ret, st.db, in.kind == EP_BIND || in.kind == EP_CONNECT ?
	    w.cfg.retention_days : 0);
	w.nslots = in.kind == EP_BIND || in.kind == EP_CONNECT ? (int)w.cfg.connections : 1;
	for (int i = 0; i < w.nslots; i++)
		lane_init(&w.slots[i].lane);
	buf_init(&w.arena, 0);
	if (hintq_init(&w.q, (size_t)(w.batch_cap * w.nslots * 2)) < 0)
		return EX_OSERR;

	/* The database first: readiness means we can route. */
	for (int i = 0; i < w.nslots; i++)
		if (slot_connect(&w, &w.slots[i]) < 0)
			goto out;    /* stopped before the database came up */
	if (in.kind == EP_BIND || in.kind == EP_CONNECT || out.kind == EP_BIND || out.kind == EP_CONNECT) {
		zctx = zmq_ctx_new();
		if (zctx == NULL) {
			status = EX_OSERR;
			goto out;
		}
	}
	if (open_sockets(&w, zctx, &in, &out) < 0) {
		status = EX_UNAVAILABLE;
		goto out;
	}
	if (out.kind == EP_STDIO) {
		if (lineout_init(&w.em.out, STDOUT_FILENO, 64 * 1024) < 0) {
			status = EX_OSERR;
			goto out;
		}
		w.em.use_fd = 1;
	}
	mode = w.cfg.replay.on ? "replay" : in.kind == EP_STDIO ? "pipe" : "service";
	log_info("ready", " mode=%s in=%s out=%s connections=%d batch_max=%lld max_attempts=%lld"
	    " linger_ms=%lld retention_days=%lld",
	    mode, w.cfg.replay.on ? "none" : endpoint_text(&in), endpoint_text(&out), w.nslots,
	    w.cfg.route.batch_max, w.cfg.route.max_attempts, w.cfg.linger_ms, w.ret.days);
	stage_ready(&st);

	if (w.cfg.replay.on)
		rc = run_replay(&w);
	else if (in.kind == EP_STDIO)
		rc = run_pipe(&w);
	else
		rc = run_service(&w);
	if (rc == -2)
		status = EX_DATAERR;     /* the database refused the replay's choice */
	else if (rc < 0)
		status = stage_stop ? EX_TEMPFAIL : EX_SOFTWARE;
	else if (w.bad_lines > 0 || w.missing > 0)
		status = EX_DATAERR;
	log_info("stopped", " events=%llu routed=%llu runs=%llu retried=%llu dead=%llu hints=%llu"
	    " bad_hints=%llu bad_lines=%ld missing=%zu sent=%llu dropped=%llu",
	    w.events, w.routed, w.runs, w.retried, w.dead, w.hints, w.bad_hints, w.bad_lines,
	    w.missing, w.em.sent, w.em.dropped);
out:
	retention_free(&w.ret);
	zsock_destroy(&w.in_sock);
	zsock_destroy(&w.em.sock);
	if (zctx != NULL)
		zmq_ctx_term(zctx);
	for (int i = 0; i < w.nslots; i++)
		lane_free(&w.slots[i].lane);
	hintq_free(&w.q);
	buf_free(&w.arena);
	lineout_free(&w.em.out);
	return status;
}
