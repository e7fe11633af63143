/*
 * outbox-relay: publish infonchat.event_outbox rows to the router, then
 * mark them published. See outbox-relay(1).
 *
 * Work is found by state: every hint on --in (a PULL socket inbox-worker
 * PUSHes to after its commits) and every sweep (at start, then each
 * --sweep-interval) makes the relay claim unpublished rows in batches until
 * none are left. One batch is one transaction: lock the rows (FOR UPDATE
 * SKIP LOCKED, so several relays share the work), send each envelope as
 * [topic, envelope] on the PUB, mark them published, commit. A crash before
 * the commit leaves them unpublished and they are sent again (subscribers
 * deduplicate by id); nothing is lost.
 *
 * Two other modes share the sink: --replay-from SEQ prints (or publishes)
 * the durable log from SEQ on and exits; --in - is a debug pipe that passes
 * envelope lines from stdin on without a database.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <zmq.h>

#include "clock.h"
#include "crashpoint.h"
#include "db.h"
#include "endpoint.h"
#include "json.h"
#include "log.h"
#include "prefixes.h"
#include "outbox.h"
#include "pipe.h"
#include "replay.h"
#include "sink.h"
#include "stage.h"

#define HINT_HWM 100            /* hints only say "look now": a few suffice (each is a whole envelope) */
#define PUB_LINGER_MS 2000      /* time to hand queued envelopes to the router at exit */
#define REPLAY_LINGER_MS 10000

struct config {
	long long batch_max;
	long long sweep_ms;
	long long hwm;
	long long max_line;
	long long replay_from;      /* -1: not replaying */
	long long replay_to;
	struct prefixes pf;         /* --topic, --kind */
	int replay_to_given;
};

static const struct stage_option options[] = {
	{ "batch-max", 'b', "N", "most rows claimed and published per transaction (default 500)" },
	{ "sweep-interval", 0, "MS", "look for unpublished rows this often without a hint (default 500)" },
	{ "hwm", 0, "N", "messages queued for the router before dropping (default 10000)" },
	{ "replay-from", 0, "SEQ", "print (or publish) rows with seq >= SEQ, published or not, and exit" },
	{ "replay-to", 0, "SEQ", "with --replay-from: stop after seq SEQ" },
	{ "topic", 0, "PREFIX", "with --replay-from: only topics starting with PREFIX (repeatable)" },
	{ "kind", 0, "PREFIX", "with --replay-from: only kinds starting with PREFIX (repeatable)" },
	{ "max-line", 0, "BYTES", "with --in -: longest envelope line, k/M suffixes (default 4M)" },
};

static int
set_option(void *ctx, const struct stage_option *o, const char *arg, const char **err)
{
	struct config *c = ctx;

	*err = NULL;
	if (strcmp(o->name, "batch-max") == 0)
		return stage_number(arg, 1, 100000, &c->batch_max);
	if (strcmp(o->name, "sweep-interval") == 0)
		return stage_number(arg, 10, 60000, &c->sweep_ms);
	if (strcmp(o->name, "hwm") == 0)
		return stage_number(arg, 1, 10000000, &c->hwm);
	if (strcmp(o->name, "replay-from") == 0)
		return stage_number(arg, 0, INT64_MAX, &c->replay_from);
	if (strcmp(o->name, "replay-to") == 0) {
		c->replay_to_given = 1;
		return stage_number(arg, 0, INT64_MAX, &c->replay_to);
	}
	if (strcmp(o->name, "max-line") == 0)
		return stage_size(arg, 1024, 1LL << 30, &c->max_line);
	if (strcmp(o->name, "topic") == 0 || strcmp(o->name, "kind") == 0)
		return prefixes_add(&c->pf, o->name, arg, err);
	return -1;
}

struct relay {
	struct config cfg;
	const char *conninfo;
	PGconn *conn;
	struct outbox ob;
	struct sink sink;
	void *hints;                /* PULL */
	int pending;                /* a hint or a sweep asked us to look */
	unsigned long long published, batches, hints_seen;
};

/* Receive and discard every hint queued now. Returns how many. */
static unsigned
hints_drain(struct relay *r)
{
	unsigned n = 0;

	while (n < 100000) {
		zmq_msg_t m;

		if (zmq_msg_init(&m) < 0)
			break;
		if (zmq_msg_recv(&m, r->hints, ZMQ_DONTWAIT) < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("cannot read hints", " err=%s", log_q(zmq_strerror(errno)));
			(void)zmq_msg_close(&m);
			break;
		}
		(void)zmq_msg_close(&m);
		n++;
	}
	r->hints_seen += n;
	return n;
}

enum batch_result { BATCH_DONE, BATCH_DB_TROUBLE, BATCH_OUTPUT_GONE, BATCH_STOPPED };

/*
 * Claim, send and mark one batch; *rows is how many were published. The
 * mark comes after every envelope was handed to the sink (for stdout:
 * written), in the claim's transaction.
 */
static enum batch_result
publish_batch(struct relay *r, int *rows)
{
	long long t0 = clock_ms();
	enum outbox_status st;

	*rows = 0;
	if (r->conn == NULL) {
		r->conn = db_connect_retry(r->conninfo, "outbox-relay", &stage_stop,
		    outbox_prepare, NULL);
		if (r->conn == NULL)
			return BATCH_STOPPED;
	}
	st = outbox_claim(&r->ob, r->conn, (int)r->cfg.batch_max);
	if (st != OUTBOX_OK)
		goto db_trouble;
	for (int i = 0; i < r->ob.n; i++) {
		size_t tlen, elen;
		const char *topic = outbox_topic(&r->ob, i, &tlen);
		const char *env = outbox_envelope(&r->ob, i, &elen);

		if (sink_send(&r->sink, topic, tlen, env, elen) < 0)
			goto output_gone;
		log_debug("envelope published", " id=%s event_id=%s seq=%s topic=%s",
		    outbox_id(&r->ob, i), outbox_event_id(&r->ob, i), outbox_seq(&r->ob, i),
		    log_q(topic));
	}
	if (sink_flush(&r->sink) < 0)
		goto output_gone;
	if (r->ob.n > 0)
		CRASH_POINT("relay.before-commit");
	st = outbox_mark(&r->ob, r->conn);
	if (st != OUTBOX_OK) {
		log_warn("mark failed: these rows will be published again", " rows=%d err=%s",
		    r->ob.n, log_q(r->ob.err));
		goto db_trouble_logged;
	}
	if (r->ob.n > 0) {
		CRASH_POINT("relay.after-commit");
		r->published += (unsigned long long)r->ob.n;
		r->batches++;
		log_info("batch published", " rows=%d seq_first=%s seq_last=%s ms=%lld",
		    r->ob.n, outbox_seq(&r->ob, 0), outbox_seq(&r->ob, r->ob.n - 1),
		    clock_ms() - t0);
	}
	*rows = r->ob.n;
	return BATCH_DONE;

db_trouble:
	log_warn("database query failed", " err=%s", log_q(r->ob.err));
db_trouble_logged:
	if (st == OUTBOX_LOST) {
		PQfinish(r->conn);
		r->conn = NULL;
	}
	return BATCH_DB_TROUBLE;
output_gone:
	log_info("output closed: rows of this batch stay unpublished", " rows=%d err=%s",
	    r->ob.n, log_q(strerror(errno)));
	outbox_abort(&r->ob, r->conn);
	return BATCH_OUTPUT_GONE;
}

/*
 * Publish batches until one comes back short (nothing left), the output
 * is not connected, or we are stopping. Returns -1 when the output is gone.
 */
static int
publish_all(struct relay *r)
{
	int rows;

	r->pending = 0;
	while (!stage_stop) {
		if (!sink_ready(&r->sink)) {
			r->pending = 1;      /* go on once it is back */
			return 0;
		}
		switch (publish_batch(r, &rows)) {
		case BATCH_DONE:
			if (rows < r->cfg.batch_max)
				return 0;
			(void)hints_drain(r);    /* this round covers them */
			break;
		case BATCH_DB_TROUBLE:
			/* A lost connection is retried at once (with backoff);
			 * a failing query after a pause. */
			if (r->conn != NULL)
				db_sleep(1000, &stage_stop);
			r->pending = 1;
			return 0;
		case BATCH_OUTPUT_GONE:
			return -1;
		case BATCH_STOPPED:
			return 0;
		}
	}
	return 0;
}

/* Returns a sysexits status: 0 when stopped or the output went away. */
static int
relay_run(struct relay *r)
{
	long long next_sweep = clock_ms();     /* sweep at start */

	while (!stage_stop) {
		zmq_pollitem_t pi[2] = {
			{ r->hints, 0, ZMQ_POLLIN, 0 },
			{ sink_poll_socket(&r->sink), 0, ZMQ_POLLIN, 0 },
		};
		long timeout = clock_until(next_sweep, 1000);

		if (r->pending)
			timeout = sink_wait_hint(&r->sink, timeout < 50 ? timeout : 50);
		log_flush();
		if (zmq_poll(pi, pi[1].socket ? 2 : 1, timeout) < 0 && errno != EINTR) {
			log_error("poll failed", " err=%s", log_q(zmq_strerror(errno)));
			return EX_SOFTWARE;
		}
		if (stage_reload) {
			stage_reload = 0;
			log_info("reload requested: nothing to reload", " published=%llu batches=%llu hints=%llu",
			    r->published, r->batches, r->hints_seen);
		}
		if (hints_drain(r) > 0)
			r->pending = 1;
		if (clock_ms() >= next_sweep) {
			r->pending = 1;
			next_sweep = clock_ms() + r->cfg.sweep_ms;
		}
		if (r->pending && publish_all(r) < 0)
			return EX_OK;
	}
	return EX_OK;
}

/* ["a","b"] from the prefixes, or NULL when there are none. */
static char *
json_array(const char *const *items, int n)
{
	struct buf b;

	if (n == 0)
		return NULL;
	buf_init(&b, 1 << 20);
	(void)buf_putc(&b, '[');
	for (int i = 0; i < n; i++) {
		if (i > 0)
			(void)buf_putc(&b, ',');
		(void)json_escape(&b, items[i], strlen(items[i]));
	}
	(void)buf_putc(&b, ']');
	if (b.failed) {
		buf_free(&b);
		return NULL;
	}
	return b.p;
}

int
main(int argc, char **argv)
{
	struct relay r;
	struct stage st = {
		.prog = "outbox-relay",
		.summary = "Publish outbox rows to the router at least once, then mark them published.",
		.common = STAGE_IN | STAGE_OUT | STAGE_DB | STAGE_RUN_DIR,
		.opts = options,
		.nopts = sizeof options / sizeof options[0],
		.set = set_option,
	};
	struct endpoint in, out;
	char *topics = NULL, *kinds = NULL;
	void *zctx = NULL;
	int rc, status = EX_OK, replay, piping;

	memset(&r, 0, sizeof r);
	r.cfg = (struct config){ .batch_max = 500, .sweep_ms = 500, .hwm = 10000,
	    .max_line = 4 << 20, .replay_from = -1, .replay_to = INT64_MAX };
	st.ctx = &r.cfg;
	log_init(st.prog);
	rc = stage_args(&st, argc, argv);
	if (rc != 0)
		return rc > 0 ? EX_OK : EX_USAGE;
	replay = r.cfg.replay_from >= 0;
	if (!replay && (r.cfg.replay_to_given || r.cfg.pf.ntopics || r.cfg.pf.nkinds))
		return stage_usage_error(&st, "%s", "--replay-to, --topic and --kind go with --replay-from");
	if (replay && r.cfg.replay_to < r.cfg.replay_from)
		return stage_usage_error(&st, "%s", "--replay-to is below --replay-from");
	if (replay && st.in != NULL)
		return stage_usage_error(&st, "%s", "--replay-from reads the database, not --in");
	piping = st.in != NULL && strcmp(st.in, "-") == 0;
	memset(&in, 0, sizeof in);     /* a replay reads the database, no --in */
	if (!replay && stage_endpoint(&st, "--in", st.in, "outbox-relay", 1, &in) < 0)
		return EX_USAGE;
	/* A replay prints unless told where to publish. */
	if (stage_endpoint(&st, "--out", replay && st.out == NULL ? "-" : st.out,
	    "router", 0, &out) < 0)
		return EX_USAGE;
	if (!replay && in.kind == EP_NONE)
		return stage_usage_error(&st, "%s", "no input: give --run-dir, --in ENDPOINT, --in - or --replay-from");
	if (out.kind == EP_NONE)
		return stage_usage_error(&st, "%s", "no output: give --run-dir or --out");
	if (stage_signals() < 0)
		return EX_OSERR;
	r.conninfo = st.db;
	outbox_init(&r.ob);

	/* The database first (not for a pipe): readiness means we can publish. */
	if (!replay && !piping) {
		r.conn = db_connect_retry(r.conninfo, "outbox-relay", &stage_stop, outbox_prepare, NULL);
		if (r.conn == NULL)
			return EX_OK;     /* stopped before the database came up */
	}

	if (in.kind != EP_STDIO || out.kind != EP_STDIO) {
		zctx = zmq_ctx_new();
		if (zctx == NULL)
			return EX_OSERR;
	}
	if (!replay && !piping) {
		int hwm = HINT_HWM;
		r.hints = zsock_new(zctx, ZMQ_PULL, 0);
		if (r.hints == NULL ||
		    zmq_setsockopt(r.hints, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0 ||
		    zsock_attach(r.hints, &in) < 0) {
			log_error("cannot open input", " in=%s err=%s", endpoint_text(&in),
			    log_q(zmq_strerror(errno)));
			status = EX_UNAVAILABLE;
			goto out;
		}
	}
	if (out.kind == EP_STDIO)
		rc = sink_open_stdout(&r.sink);
	else
		rc = sink_open_pub(&r.sink, zctx, &out, (int)r.cfg.hwm,
		    replay ? REPLAY_LINGER_MS : PUB_LINGER_MS, replay);
	if (rc < 0) {
		log_error("cannot open output", " out=%s err=%s", endpoint_text(&out),
		    log_q(zmq_strerror(errno)));
		status = EX_UNAVAILABLE;
		goto out;
	}
	log_info("ready", " mode=%s in=%s out=%s batch_max=%lld sweep_ms=%lld hwm=%lld",
	    replay ? "replay" : piping ? "pipe" : "relay", replay ? "db" : endpoint_text(&in),
	    endpoint_text(&out), r.cfg.batch_max, r.cfg.sweep_ms, r.cfg.hwm);
	stage_ready(&st);

	if (replay) {
		struct replay q = { r.cfg.replay_from, r.cfg.replay_to, NULL, NULL,
		    (int)r.cfg.batch_max };
		q.topics = topics = json_array(r.cfg.pf.topics, r.cfg.pf.ntopics);
		q.kinds = kinds = json_array(r.cfg.pf.kinds, r.cfg.pf.nkinds);
		status = replay_run(&q, &r.sink, r.conninfo);
	} else if (piping) {
		status = pipe_run(&r.sink, (size_t)r.cfg.max_line);
	} else {
		status = relay_run(&r);
		log_info("stopped", " published=%llu batches=%llu hints=%llu",
		    r.published, r.batches, r.hints_seen);
	}
	sink_close(&r.sink);
out:
	zsock_destroy(&r.hints);
	if (zctx != NULL)
		(void)zmq_ctx_term(zctx);
	outbox_free(&r.ob);
	PQfinish(r.conn);
	free(topics);
	free(kinds);
	return status;
}
