/*
 * inbox-writer: store inbox envelopes in PostgreSQL with group commit and
 * confirm each one only after its COMMIT. See inbox-writer(1).
 *
 * Input is a ROUTER socket that ingest-httpd's DEALERs talk to (frames
 * [peer, token, envelope], answered [peer, token, reply]) or, with --in -,
 * NDJSON on stdin (bulk import). Every batch is what arrived while the last
 * one was committing, up to --batch-max, so one request alone waits for no
 * one and a burst shares one transaction. Committed new envelopes are
 * passed on to --out as hints for inbox-worker.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <zmq.h>

#ifndef ZMQ_ZERO_COPY_RECV
#define ZMQ_ZERO_COPY_RECV 10   /* a draft context option of libzmq 4.3 */
#endif

#include "clock.h"
#include "crashpoint.h"
#include "db.h"
#include "endpoint.h"
#include "envelope.h"
#include "lines.h"
#include "log.h"
#include "stage.h"
#include "store.h"
#include "zpeers.h"

#define MAX_LANES 8
#define HINT_CONNECT_MS 500   /* bulk import: longest wait for the hint socket's peer */

struct config {
	long long batch_max;
	long long connections;
	long long max_line;
	int allow_async_commit;
};

static const struct stage_option options[] = {
	{ "batch-max", 'b', "N", "most envelopes in one transaction (default 512)" },
	{ "connections", 'c', "N", "database connections, each with a batch in flight (default 2)" },
	{ "max-line", 0, "BYTES", "longest envelope line, k/M suffixes (default 4M)" },
	{ "allow-async-commit", 0, NULL, "start even when synchronous_commit is off (acknowledged events may be lost)" },
};

static int
set_option(void *ctx, const struct stage_option *o, const char *arg, const char **err)
{
	struct config *c = ctx;

	*err = NULL;
	if (strcmp(o->name, "batch-max") == 0)
		return stage_number(arg, 1, 100000, &c->batch_max);
	if (strcmp(o->name, "connections") == 0)
		return stage_number(arg, 1, MAX_LANES, &c->connections);
	if (strcmp(o->name, "max-line") == 0)
		return stage_size(arg, 1024, 1LL << 30, &c->max_line);
	if (strcmp(o->name, "allow-async-commit") == 0) {
		c->allow_async_commit = 1;
		return 0;
	}
	return -1;
}

/* A database connection and the batch it has in flight. */
struct lane {
	PGconn *conn;
	struct store st;
	struct item *items;
	size_t n;
	size_t bytes;         /* envelope bytes of items[0..n) */
	int busy;
};

/*
 * A batch is full at --batch-max envelopes or at BATCH_BYTES of them,
 * whichever comes first: large payloads make small batches, so a batch (its
 * lines, the parameters built from them, libpq's copy) stays a few MB. An
 * item buffer that grew past ITEM_KEEP is given back after use, so one burst
 * of large events does not pin its memory in every slot.
 */
#define BATCH_BYTES (4u << 20)
#define ITEM_KEEP   (64u << 10)

static int
lane_full(const struct lane *l, long long batch_max)
{
	return l->n >= (size_t)batch_max || l->bytes >= BATCH_BYTES;
}

struct writer {
	struct config cfg;
	const char *conninfo;
	struct lane lanes[MAX_LANES];
	int nlanes;
	struct lane *cur;     /* the lane being filled or finished */
	void *in_sock;        /* ROUTER, or NULL for stdin */
	void *out_sock;       /* PUSH hints, or NULL */
	int out_fd;           /* stdout hints, or -1 */
	unsigned long long stored, duplicates, refused, hints_dropped;
	long bad_lines;
	int started;          /* the first connection passed its durability check */
};

static int writer_setup(PGconn *conn, void *arg);

static void
item_reset(struct item *it)
{
	if (it->line.cap > ITEM_KEEP) {
		buf_free(&it->line);
		buf_init(&it->line, 0);
	}
	if (it->arena.cap > ITEM_KEEP) {
		buf_free(&it->arena);
		buf_init(&it->arena, 0);
	}
	buf_reset(&it->line);
	buf_reset(&it->peer);
	it->result = ITEM_PENDING;
	it->event_id[0] = '\0';
	it->error[0] = '\0';
	it->same_as = -1;
	it->lineno = 0;
}

/* Send a reply to a ROUTER peer: peer holds [u32 len][identity][u32 len][token]. */
static void
reply_peer(struct writer *w, const struct buf *peer, const char *text)
{
	uint32_t l1, l2;

	if (w->in_sock == NULL || peer->len < 8)
		return;
	memcpy(&l1, peer->p, 4);
	memcpy(&l2, peer->p + 4 + l1, 4);
	if (zmq_send(w->in_sock, peer->p + 4, l1, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(w->in_sock, peer->p + 8 + l1, l2, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(w->in_sock, text, strlen(text), ZMQ_DONTWAIT) < 0)
		log_debug("reply not delivered", " err=%s", log_q(zmq_strerror(errno)));
}

static void
send_hint(struct writer *w, const struct buf *line)
{
	if (w->out_sock != NULL) {
		if (zmq_send(w->out_sock, line->p, line->len, ZMQ_DONTWAIT) < 0)
			w->hints_dropped++;
	} else if (w->out_fd >= 0) {
		size_t off = 0;
		/* stdout: the line plus a newline, written whole */
		while (off <= line->len) {
			const char *p = off < line->len ? line->p + off : "\n";
			size_t n = off < line->len ? line->len - off : 1;
			ssize_t k = write(w->out_fd, p, n);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				w->hints_dropped++;
				return;
			}
			off += (size_t)k;
		}
	}
}

/* Answer every item of w->cur's stored batch, pass new events on, empty it. */
static void
finish_batch(struct writer *w)
{
	char reply[400];

	CRASH_POINT("writer.after-commit");    /* stored, nobody told */
	for (size_t i = 0; i < w->cur->n; i++) {
		struct item *it = &w->cur->items[i];
		char where[32] = "";

		if (it->lineno > 0)
			snprintf(where, sizeof where, " line=%ld", it->lineno);
		switch (it->result) {
		case ITEM_ACCEPTED:
			w->stored++;
			if (i == w->cur->n / 2)
				CRASH_POINT("writer.mid-reply");    /* half the batch answered */
			snprintf(reply, sizeof reply, "{\"status\":\"accepted\",\"event_id\":\"%s\"}", it->event_id);
			log_info("event stored", " id=%s workspace_id=%s role=%s%s", it->e.id,
			    it->e.workspace_id, log_q(it->e.role), where);
			send_hint(w, &it->line);
			break;
		case ITEM_DUPLICATE:
			w->duplicates++;
			snprintf(reply, sizeof reply, "{\"status\":\"duplicate\",\"event_id\":\"%s\"}", it->event_id);
			log_info("event duplicate", " id=%s original=%s workspace_id=%s%s", it->e.id,
			    it->event_id, it->e.workspace_id, where);
			break;
		case ITEM_UNKNOWN_WORKSPACE:
			w->refused++;
			if (it->lineno > 0)
				w->bad_lines++;
			snprintf(reply, sizeof reply, "{\"status\":\"unknown_workspace\"}");
			log_warn("event refused: no such workspace", " id=%s workspace_id=%s%s",
			    it->e.id, it->e.workspace_id, where);
			break;
		case ITEM_UNSETTLED:
		case ITEM_PENDING:
			w->refused++;
			if (it->lineno > 0)
				w->bad_lines++;
			snprintf(reply, sizeof reply, "{\"status\":\"unavailable\"}");
			log_warn("event not settled", " id=%s err=%s%s", it->e.id,
			    log_q(it->error), where);
			break;
		case ITEM_INVALID: {
			struct buf b = BUF_INIT;
			w->refused++;
			if (it->lineno > 0)
				w->bad_lines++;
			buf_puts(&b, "{\"status\":\"invalid\",\"message\":");
			json_escape(&b, it->error, strlen(it->error));
			buf_putc(&b, '}');
			snprintf(reply, sizeof reply, "%s", b.failed ? "{\"status\":\"invalid\"}" : b.p);
			buf_free(&b);
			log_warn("event refused by database", " id=%s err=%s%s", it->e.id,
			    log_q(it->error), where);
			break;
		}
		}
		reply_peer(w, &it->peer, reply);
	}
	w->cur->n = 0;
	w->cur->bytes = 0;
}

/* Store the batch, reconnecting as long as it takes. Returns 0, or -1 when stopped first. */
static int
commit_batch(struct writer *w)
{
	if (w->cur->n == 0)
		return 0;
	for (;;) {
		struct lane *l = w->cur;

		if (l->conn == NULL) {
			l->conn = db_connect_retry(w->conninfo, "inbox-writer", &stage_stop,
			    writer_setup, w);
			if (l->conn == NULL)
				return -1;
		}
		if (store_batch(&l->st, l->conn, l->items, l->n) == STORE_OK)
			break;
		PQfinish(l->conn);
		l->conn = NULL;
	}
	log_debug("batch committed", " rows=%zu", w->cur->n);
	finish_batch(w);
	return 0;
}

static struct item *
next_item(struct writer *w)
{
	struct item *it = &w->cur->items[w->cur->n];

	item_reset(it);
	return it;
}

/* Parse it->line; on failure report it at once and return -1. */
static int
parse_item(struct writer *w, struct item *it)
{
	const char *why;

	if (envelope_parse(it->line.p ? it->line.p : "", it->line.len, &it->e, &it->arena, &why) == 0) {
		w->cur->n++;
		w->cur->bytes += it->line.len;
		return 0;
	}
	w->refused++;
	if (it->lineno > 0) {
		w->bad_lines++;
		log_error("bad envelope line", " line=%ld err=%s", it->lineno, log_q(why));
	} else {
		char reply[200];
		snprintf(reply, sizeof reply, "{\"status\":\"invalid\",\"message\":\"%s\"}", why);
		log_warn("bad envelope from peer", " err=%s", log_q(why));
		reply_peer(w, &it->peer, reply);
	}
	return -1;
}

/* Receive one multipart message from the ROUTER: 1 got one, 0 none, -1 error. */
static int
recv_peer(struct writer *w)
{
	zmq_msg_t part[3];
	int nparts = 0, more = 1, rc = 1;
	size_t mlen = sizeof more;

	while (more) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, w->in_sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
			if (nparts == 0)
				return errno == EAGAIN ? 0 : (errno == EINTR ? 0 : -1);
			break;
		}
		zmq_getsockopt(w->in_sock, ZMQ_RCVMORE, &more, &mlen);
		if (nparts < 3)
			part[nparts++] = m;
		else
			zmq_msg_close(&m);
	}
	if (nparts != 3) {
		log_warn("malformed request frames", " frames=%d", nparts);
	} else {
		struct item *it = next_item(w);
		uint32_t l1 = (uint32_t)zmq_msg_size(&part[0]), l2 = (uint32_t)zmq_msg_size(&part[1]);

		buf_append(&it->peer, &l1, 4);
		buf_append(&it->peer, zmq_msg_data(&part[0]), l1);
		buf_append(&it->peer, &l2, 4);
		buf_append(&it->peer, zmq_msg_data(&part[1]), l2);
		if (zmq_msg_size(&part[2]) == 4 && memcmp(zmq_msg_data(&part[2]), "ping", 4) == 0) {
			reply_peer(w, &it->peer, "{\"status\":\"pong\"}");
		} else if (zmq_msg_size(&part[2]) > (size_t)w->cfg.max_line) {
			reply_peer(w, &it->peer, "{\"status\":\"invalid\",\"message\":\"envelope longer than --max-line\"}");
		} else {
			buf_append(&it->line, zmq_msg_data(&part[2]), zmq_msg_size(&part[2]));
			if (it->line.failed || it->peer.failed)
				rc = -1;
			else
				(void)parse_item(w, it);
		}
	}
	for (int i = 0; i < nparts; i++)
		zmq_msg_close(&part[i]);
	return rc;
}

/* Finish the batch of a lane whose result has arrived. Returns 0, or -1 when stopped. */
static int
lane_complete(struct writer *w, struct lane *l)
{
	enum store_status st = store_complete(&l->st, l->conn, l->items, l->n);

	l->busy = 0;
	w->cur = l;
	if (st != STORE_OK) {
		PQfinish(l->conn);
		l->conn = NULL;
		return commit_batch(w);    /* reconnect and store it again */
	}
	log_debug("batch committed", " rows=%zu", l->n);
	finish_batch(w);
	return 0;
}

/* Send the lane's batch without waiting for it. Returns 0, or -1 when stopped. */
static int
lane_send(struct writer *w, struct lane *l)
{
	int rc = -1;

	w->cur = l;
	if (l->conn == NULL)
		l->conn = db_connect_retry(w->conninfo, "inbox-writer", &stage_stop,
		    writer_setup, w);
	if (l->conn != NULL)
		rc = store_send(&l->st, l->conn, l->items, l->n);
	if (rc == 0) {
		l->busy = 1;
		return 0;
	}
	if (rc > 0) {
		finish_batch(w);    /* nothing needed the database */
		return 0;
	}
	if (l->conn != NULL) {
		PQfinish(l->conn);
		l->conn = NULL;
	}
	return commit_batch(w);
}

/*
 * The ROUTER loop: while one lane's batch commits, the next lane fills with
 * what arrives meanwhile and is sent as soon as it has anything, so the
 * database always has the next batch ready when a commit ends.
 */
static int
run_router(struct writer *w)
{
	while (!stage_stop) {
		zmq_pollitem_t pi[1 + MAX_LANES];
		struct lane *busy[MAX_LANES], *idle = NULL;
		int nb = 0, rc;

		for (int i = 0; i < w->nlanes; i++) {
			struct lane *l = &w->lanes[i];
			if (l->busy) {
				pi[1 + nb] = (zmq_pollitem_t){ NULL, PQsocket(l->conn), ZMQ_POLLIN, 0 };
				busy[nb++] = l;
			} else if (idle == NULL) {
				idle = l;
			}
		}
		pi[0] = (zmq_pollitem_t){ w->in_sock, 0, idle ? ZMQ_POLLIN : 0, 0 };
		log_flush();
		rc = zmq_poll(pi, 1 + nb, 1000);
		if (rc < 0 && errno != EINTR)
			return -1;
		if (stage_reload) {
			stage_reload = 0;
			log_info("reload requested: nothing to reload", "%s", "");
		}
		for (int k = 0; k < nb && rc > 0; k++) {
			struct lane *l = busy[k];
			if (!(pi[1 + k].revents & ZMQ_POLLIN))
				continue;
			if ((!PQconsumeInput(l->conn) || !PQisBusy(l->conn)) &&
			    lane_complete(w, l) < 0)
				return 0;
		}
		if (idle == NULL)
			continue;
		w->cur = idle;
		while (!lane_full(idle, w->cfg.batch_max) && recv_peer(w) > 0)
			;
		if (idle->n > 0 && lane_send(w, idle) < 0)
			return 0;
	}
	/* Draining: finish what is in flight, store what is already queued. */
	for (int i = 0; i < w->nlanes; i++)
		if (w->lanes[i].busy && lane_complete(w, &w->lanes[i]) < 0)
			return 0;
	w->cur = &w->lanes[0];
	while (!lane_full(w->cur, w->cfg.batch_max) && recv_peer(w) > 0)
		;
	(void)commit_batch(w);    /* with the database gone, what is left stays unanswered */
	return 0;
}

/* Bulk import: returns 0, or -1 when stopped with work not stored. */
static int
run_stdin(struct writer *w)
{
	struct line_reader lr;
	int done = 0, rc = 0;

	lines_init(&lr, STDIN_FILENO, (size_t)w->cfg.max_line);
	while (!done && !stage_stop) {
		while (!lane_full(w->cur, w->cfg.batch_max) && !done) {
			const char *line;
			size_t len;
			enum line_result lres = lines_next(&lr, &line, &len);

			if (lres == LINE_OK) {
				struct item *it;
				if (len == 0)
					continue;      /* blank lines are allowed */
				it = next_item(w);
				it->lineno = lr.lineno;
				buf_append(&it->line, line, len);
				(void)parse_item(w, it);
			} else if (lres == LINE_TOO_LONG) {
				w->bad_lines++;
				log_error("bad envelope line", " line=%ld err=%s", lr.lineno,
				    log_q("longer than --max-line"));
			} else if (lres == LINE_EOF) {
				done = 1;
			} else {
				if (w->cur->n > 0 && !lines_ready(&lr))
					break;      /* commit what we have rather than wait */
				if (lines_fill(&lr) < 0) {
					if (errno == EINTR) {
						if (stage_stop)
							break;
						continue;
					}
					log_error("cannot read stdin", " err=%s", log_q(strerror(errno)));
					done = 1;
					rc = -1;
				}
			}
		}
		if (commit_batch(w) < 0) {
			rc = -1;
			break;
		}
	}
	if (!done && rc == 0) {
		log_warn("stopped before the end of the input", " line=%ld", lr.lineno);
		rc = -1;
	}
	lines_free(&lr);
	return rc;
}

/*
 * Wait until sock has a peer, at most ms (or a stop signal), so that a bulk
 * import says when no inbox-worker is there and does not fill the hint queue
 * before the connection is up. With nobody there the import goes on, its
 * hints queued until the queue is full and the worker sweeps.
 */
static void
wait_for_peer(void *zctx, void *sock, long ms)
{
	struct zpeers peers;
	long long deadline = clock_ms() + ms;

	if (zpeers_watch(&peers, zctx, sock) < 0)
		return;
	while (zpeers_update(&peers) >= 0 && peers.count == 0 && !stage_stop &&
	    clock_ms() < deadline) {
		zmq_pollitem_t pi = { zpeers_socket(&peers), 0, ZMQ_POLLIN, 0 };
		if (zmq_poll(&pi, 1, clock_until(deadline, ms)) < 0 && errno != EINTR)
			break;
	}
	if (peers.count == 0)
		log_warn("no inbox-worker connected yet: hints queue for it, up to 500, then are dropped",
		    " waited_ms=%ld", ms);
	zpeers_close(&peers);
}

/* Refuse a connection that would acknowledge what a crash can lose. */
static int
check_durability(PGconn *conn, const char **setting)
{
	PGresult *r = PQexec(conn, "select current_setting('synchronous_commit')");
	static char value[32];
	int ok = 1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		snprintf(value, sizeof value, "%s", PQgetvalue(r, 0, 0));
		ok = strcmp(value, "off") != 0;
	}
	PQclear(r);
	*setting = value;
	return ok;
}

/*
 * Setup of every connection: the statements, and for a reconnection (the
 * first connection's check refuses to start instead) synchronous_commit
 * turned back on for the session if the server's default went off since.
 */
static int
writer_setup(PGconn *conn, void *arg)
{
	struct writer *w = arg;
	const char *setting;

	if (store_prepare(conn, NULL) < 0)
		return -1;
	if (!w->started || w->cfg.allow_async_commit || check_durability(conn, &setting))
		return 0;
	log_warn("synchronous_commit is off on a new connection: turned on for it", " synchronous_commit=%s",
	    setting);
	return db_command(conn, "set synchronous_commit = on");
}

int
main(int argc, char **argv)
{
	struct writer w;
	struct stage st = {
		.prog = "inbox-writer",
		.summary = "Store inbox envelopes in PostgreSQL (group commit); confirm each after its COMMIT.",
		.common = STAGE_IN | STAGE_OUT | STAGE_DB | STAGE_RUN_DIR,
		.opts = options,
		.nopts = sizeof options / sizeof options[0],
		.set = set_option,
	};
	struct endpoint in, out;
	const char *setting;
	void *zctx = NULL;
	int rc, status = EX_OK;

	memset(&w, 0, sizeof w);
	w.cfg = (struct config){ 512, 2, 4 << 20, 0 };
	w.out_fd = -1;
	st.ctx = &w.cfg;
	log_init(st.prog);
	rc = stage_args(&st, argc, argv);
	if (rc != 0)
		return rc > 0 ? EX_OK : EX_USAGE;
	if (stage_endpoint(&st, "--in", st.in, "inbox-writer", 1, &in) < 0 ||
	    stage_endpoint(&st, "--out", st.out, "inbox-worker", 0, &out) < 0)
		return EX_USAGE;
	if (in.kind == EP_NONE)
		return stage_usage_error(&st, "no input: give --run-dir, --in ENDPOINT or --in -");
	if (stage_signals() < 0)
		return EX_OSERR;
	w.conninfo = st.db;
	w.nlanes = in.kind == EP_STDIO ? 1 : (int)w.cfg.connections;
	for (int l = 0; l < w.nlanes; l++) {
		struct lane *ln = &w.lanes[l];
		store_init(&ln->st);
		ln->items = calloc((size_t)w.cfg.batch_max, sizeof *ln->items);
		if (ln->items == NULL)
			return EX_OSERR;
		for (long long i = 0; i < w.cfg.batch_max; i++) {
			buf_init(&ln->items[i].line, 0);
			buf_init(&ln->items[i].arena, 0);
			buf_init(&ln->items[i].peer, 0);
		}
	}
	w.cur = &w.lanes[0];

	/* The database first: readiness means we can store. */
	w.cur->conn = db_connect_retry(w.conninfo, "inbox-writer", &stage_stop, writer_setup, &w);
	if (w.cur->conn == NULL)
		goto done;    /* stopped before the database came up: EX_OK */
	if (!check_durability(w.cur->conn, &setting) && !w.cfg.allow_async_commit) {
		log_error("refusing to start: synchronous_commit is off, an acknowledged event could be lost in a crash",
		    " synchronous_commit=%s hint=%s", setting,
		    log_q("turn it on, or pass --allow-async-commit to accept the risk"));
		status = EX_CONFIG;
		goto done;
	}
	w.started = 1;

	if (in.kind != EP_STDIO || (out.kind != EP_STDIO && out.kind != EP_NONE)) {
		zctx = zmq_ctx_new();
		if (zctx == NULL) {
			status = EX_OSERR;
			goto done;
		}
		/*
		 * Received envelopes are copied out of ZeroMQ's read buffers, not
		 * kept in them: a read buffer lives until the last message in it
		 * is closed, and with a thousand requests in flight that pinned
		 * about 4 MB where the envelopes themselves were 1.7 MB. The copy
		 * costs well under a microsecond an envelope.
		 */
		if (zmq_ctx_set(zctx, ZMQ_ZERO_COPY_RECV, 0) < 0)
			log_warn("cannot turn off zero-copy receive", " err=%s",
			    log_q(zmq_strerror(errno)));
	}
	if (in.kind != EP_STDIO) {
		int hwm = 100000, one = 1;
		w.in_sock = zsock_new(zctx, ZMQ_ROUTER, 1000);
		if (w.in_sock == NULL ||
		    zmq_setsockopt(w.in_sock, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0 ||
		    zmq_setsockopt(w.in_sock, ZMQ_SNDHWM, &hwm, sizeof hwm) < 0 ||
		    zmq_setsockopt(w.in_sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one) < 0 ||
		    zsock_attach(w.in_sock, &in) < 0) {
			log_error("cannot open input", " in=%s err=%s", endpoint_text(&in),
			    log_q(zmq_strerror(errno)));
			status = EX_UNAVAILABLE;
			goto done;
		}
	}
	if (out.kind == EP_STDIO) {
		w.out_fd = STDOUT_FILENO;
	} else if (out.kind != EP_NONE) {
		/*
		 * Hints carry whole envelopes and only say "look now": a worker
		 * that lags sweeps the table anyway, so a short queue (a batch's
		 * worth, under 1 MB) is enough; past it hints are dropped
		 * (counted), never memory.
		 *
		 * The service drops hints while no worker is connected
		 * (ZMQ_IMMEDIATE): one that starts sweeps first. A bulk import
		 * queues them from the start instead, and at exit gives them as
		 * long to leave as it gave the connection to come up. With
		 * ZMQ_IMMEDIATE a send fails until the connection's handshake is
		 * done, which the monitor's events do not tell (its
		 * HANDSHAKE_SUCCEEDED can come first): on a busy machine a
		 * one-event import lost its only hint that way, and the event
		 * waited for the worker's next sweep.
		 */
		int hwm = 500, stdio = in.kind == EP_STDIO, immediate = !stdio;
		w.out_sock = zsock_new(zctx, ZMQ_PUSH, stdio ? HINT_CONNECT_MS : 100);
		if (w.out_sock == NULL ||
		    zmq_setsockopt(w.out_sock, ZMQ_SNDHWM, &hwm, sizeof hwm) < 0 ||
		    zmq_setsockopt(w.out_sock, ZMQ_IMMEDIATE, &immediate, sizeof immediate) < 0 ||
		    zsock_attach(w.out_sock, &out) < 0) {
			log_error("cannot open output", " out=%s err=%s", endpoint_text(&out),
			    log_q(zmq_strerror(errno)));
			status = EX_UNAVAILABLE;
			goto done;
		}
		if (stdio)
			wait_for_peer(zctx, w.out_sock, HINT_CONNECT_MS);
	}
	log_info("ready", " in=%s out=%s batch_max=%lld synchronous_commit=%s",
	    endpoint_text(&in), endpoint_text(&out), w.cfg.batch_max, setting);
	stage_ready(&st);

	rc = in.kind == EP_STDIO ? run_stdin(&w) : run_router(&w);
	if (rc < 0 || w.cur->n > 0)
		status = EX_TEMPFAIL;
	else if (w.bad_lines > 0)
		status = EX_DATAERR;
	log_info("stopped", " stored=%llu duplicates=%llu refused=%llu bad_lines=%ld hints_dropped=%llu",
	    w.stored, w.duplicates, w.refused, w.bad_lines, w.hints_dropped);

done:
	/* Every exit after the lanes exist comes here, so nothing leaks. */
	zsock_destroy(&w.in_sock);
	zsock_destroy(&w.out_sock);
	if (zctx != NULL)
		zmq_ctx_term(zctx);
	for (int l = 0; l < w.nlanes; l++) {
		struct lane *ln = &w.lanes[l];
		PQfinish(ln->conn);
		store_free(&ln->st);
		for (long long i = 0; i < w.cfg.batch_max; i++) {
			buf_free(&ln->items[i].line);
			buf_free(&ln->items[i].arena);
			buf_free(&ln->items[i].peer);
		}
		free(ln->items);
	}
	return status;
}
