#include "outbox.h"

#include <stdio.h>
#include <string.h>

#include "db.h"
#include "log.h"

/* Both the claim and the replay return these columns in this order. */
#define COLUMNS \
	"o.id, o.seq, o.event_id, o.workspace_id, o.topic, " \
	"infonchat.outbox_envelope(o) "
enum { C_ID, C_SEQ, C_EVENT_ID, C_WORKSPACE_ID, C_TOPIC, C_ENVELOPE };

/* The partial index event_outbox_unpublished_idx (seq) serves this. */
static const char claim_sql[] =
    "select " COLUMNS
    "from infonchat.event_outbox o "
    "where o.published_at is null "
    "order by o.seq "
    "limit $1 "
    "for update of o skip locked";

/* By the primary key, as an array, so that no join order can read the
 * whole table; with the workspace_ids too, so that it stays a single-shard
 * update when the table is distributed by workspace_id. The rows are the
 * claim's, locked since, so they are still unpublished: saying so
 * ("published_at is null") would let the planner read them through the
 * partial index of unpublished rows, which is all the backlog, and it did
 * (70 ms a batch with 87,000 rows behind). */
static const char mark_sql[] =
    "update infonchat.event_outbox o set published_at = now() "
    "where o.id = any ($2::uuid[]) and o.workspace_id = any ($1::uuid[])";

static const char replay_sql[] =
    "declare outbox_replay no scroll cursor for "
    "select " COLUMNS
    "from infonchat.event_outbox o "
    "where o.seq between $1::bigint and $2::bigint "
    "and ($3::json is null or exists (select 1 from json_array_elements_text($3::json) t(p) "
    "where starts_with(o.topic, t.p))) "
    "and ($4::json is null or exists (select 1 from json_array_elements_text($4::json) k(p) "
    "where starts_with(o.kind, k.p))) "
    "order by o.seq";

void
outbox_init(struct outbox *o)
{
	memset(o, 0, sizeof *o);
	buf_init(&o->ids, 0);
	buf_init(&o->workspaces, 0);
}

void
outbox_free(struct outbox *o)
{
	PQclear(o->res);
	o->res = NULL;
	o->n = 0;
	buf_free(&o->ids);
	buf_free(&o->workspaces);
}

const char *
outbox_id(const struct outbox *o, int i)
{
	return PQgetvalue(o->res, i, C_ID);
}

const char *
outbox_event_id(const struct outbox *o, int i)
{
	return PQgetvalue(o->res, i, C_EVENT_ID);
}

const char *
outbox_seq(const struct outbox *o, int i)
{
	return PQgetvalue(o->res, i, C_SEQ);
}

const char *
outbox_topic(const struct outbox *o, int i, size_t *len)
{
	*len = (size_t)PQgetlength(o->res, i, C_TOPIC);
	return PQgetvalue(o->res, i, C_TOPIC);
}

const char *
outbox_envelope(const struct outbox *o, int i, size_t *len)
{
	*len = (size_t)PQgetlength(o->res, i, C_ENVELOPE);
	return PQgetvalue(o->res, i, C_ENVELOPE);
}

/* Record why res failed; LOST when the connection is unusable. */
static enum outbox_status
failed(struct outbox *o, PGconn *conn, PGresult *res, const char *what)
{
	enum outbox_status st = db_connection_lost(conn, res) ? OUTBOX_LOST : OUTBOX_FAILED;

	snprintf(o->err, sizeof o->err, "%s: %s", what, db_error(conn, res));
	PQclear(res);
	return st;
}

/* Run a statement without rows. */
static enum outbox_status
command(struct outbox *o, PGconn *conn, const char *sql)
{
	PGresult *r = PQexec(conn, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		return failed(o, conn, r, sql);
	PQclear(r);
	return OUTBOX_OK;
}

/* libpq prints notices ("terminating connection due to ...") on stderr
 * as they come; make them log lines like any other. */
static void
on_notice(void *arg, const char *message)
{
	size_t n = strcspn(message, "\n");
	char line[400];

	(void)arg;
	snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), message);
	log_warn("database notice", " notice=%s", log_q(line));
}

int
outbox_replay_prepare(PGconn *conn, void *arg)
{
	(void)arg;
	(void)PQsetNoticeProcessor(conn, on_notice, NULL);
	return 0;
}

int
outbox_prepare(PGconn *conn, void *arg)
{
	static const struct db_statement stmts[] = {
		{ "outbox_claim", claim_sql, 1 },
		{ "outbox_mark", mark_sql, 2 },
	};
	(void)outbox_replay_prepare(conn, arg);
	if (db_command(conn, "set synchronous_commit = off") < 0)
		return -1;
	return db_prepare_all(conn, stmts, sizeof stmts / sizeof stmts[0]);
}

enum outbox_status
outbox_claim(struct outbox *o, PGconn *conn, int max)
{
	char limit[24];
	const char *params[1] = { limit };
	enum outbox_status st;
	PGresult *r;

	PQclear(o->res);
	o->res = NULL;
	o->n = 0;
	st = command(o, conn, "begin");
	if (st != OUTBOX_OK)
		return st;
	snprintf(limit, sizeof limit, "%d", max);
	r = PQexecPrepared(conn, "outbox_claim", 1, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		st = failed(o, conn, r, "claim");
		if (st != OUTBOX_LOST)
			outbox_abort(o, conn);
		return st;
	}
	o->res = r;
	o->n = PQntuples(r);
	return OUTBOX_OK;
}

/* Append the uuid text s to the array literal in b. */
static void
array_add(struct buf *b, const char *s)
{
	(void)buf_putc(b, b->len == 0 ? '{' : ',');
	(void)buf_puts(b, s);
}

enum outbox_status
outbox_mark(struct outbox *o, PGconn *conn)
{
	const char *params[2];
	enum outbox_status st;
	PGresult *r;

	if (o->n > 0) {
		buf_reset(&o->ids);
		buf_reset(&o->workspaces);
		for (int i = 0; i < o->n; i++) {
			array_add(&o->ids, PQgetvalue(o->res, i, C_ID));
			array_add(&o->workspaces, PQgetvalue(o->res, i, C_WORKSPACE_ID));
		}
		(void)buf_putc(&o->ids, '}');
		(void)buf_putc(&o->workspaces, '}');
		if (o->ids.failed || o->workspaces.failed) {
			snprintf(o->err, sizeof o->err, "mark: out of memory");
			outbox_abort(o, conn);
			return OUTBOX_FAILED;
		}
		params[0] = o->workspaces.p;
		params[1] = o->ids.p;
		r = PQexecPrepared(conn, "outbox_mark", 2, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			st = failed(o, conn, r, "mark");
			if (st != OUTBOX_LOST)
				outbox_abort(o, conn);
			return st;
		}
		PQclear(r);
	}
	return command(o, conn, "commit");
}

void
outbox_abort(struct outbox *o, PGconn *conn)
{
	PGresult *r = PQexec(conn, "rollback");

	(void)o;
	PQclear(r);
}

enum outbox_status
outbox_replay_open(struct outbox *o, PGconn *conn, long long from, long long to,
    const char *topics, const char *kinds)
{
	char f[24], t[24];
	const char *params[4] = { f, t, topics, kinds };
	enum outbox_status st;
	PGresult *r;

	PQclear(o->res);
	o->res = NULL;
	o->n = 0;
	st = command(o, conn, "begin isolation level repeatable read, read only");
	if (st != OUTBOX_OK)
		return st;
	snprintf(f, sizeof f, "%lld", from);
	snprintf(t, sizeof t, "%lld", to);
	r = PQexecParams(conn, replay_sql, 4, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		st = failed(o, conn, r, "replay");
		if (st != OUTBOX_LOST)
			outbox_abort(o, conn);
		return st;
	}
	PQclear(r);
	return OUTBOX_OK;
}

enum outbox_status
outbox_replay_fetch(struct outbox *o, PGconn *conn, int max)
{
	char sql[64];
	PGresult *r;

	PQclear(o->res);
	o->res = NULL;
	o->n = 0;
	snprintf(sql, sizeof sql, "fetch forward %d from outbox_replay", max);
	r = PQexec(conn, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		return failed(o, conn, r, "fetch");
	o->res = r;
	o->n = PQntuples(r);
	return OUTBOX_OK;
}

void
outbox_replay_close(struct outbox *o, PGconn *conn)
{
	PQclear(o->res);
	o->res = NULL;
	o->n = 0;
	outbox_abort(o, conn);    /* read only: rollback is the cheapest end */
}
