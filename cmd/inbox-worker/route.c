#include "route.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crashpoint.h"
#include "db.h"
#include "json.h"
#include "log.h"

/*
 * The claim: pending rows that are due, locked with SKIP LOCKED so that
 * several workers never claim the same row and never wait for each other.
 * By the ids (and workspace_ids) of hints, or oldest next_attempt_at first.
 * claimed is materialised once: every later step reads the same rows.
 *
 * By hints, every id probes the primary key in a subquery of its own (a
 * subquery that locks rows is never merged into the join). As a plain join
 * the planner was free to read the whole pending index and merge it with
 * the ids, and a plan cached while the table was nearly empty did just that
 * for every batch: the cost of a batch grew with the backlog, so a worker
 * that fell behind fell further behind (about 1 ms of server CPU per event
 * at 3,000 events/s instead of about 0.1). Everything but the id is
 * compared outside the probe (its LIMIT keeps the planner from pushing
 * those checks down into it), so that no other index can serve it: the
 * unique index led by workspace_id would read the whole workspace, and the
 * pending index, tiny in the statistics of a young table, all the backlog.
 * The probe returns the row as locked (its latest version), so the checks
 * outside see what a later worker or replay made of it; a row they reject
 * (routed meanwhile, not due, a hint naming another workspace) is only
 * locked, unclaimed, until the commit.
 */
#define CLAIM_WHERE " e.status = 'pending' and e.next_attempt_at <= now()"

#define CLAIM_IDS(cols) \
	" select " cols ", h.ord" \
	" from (select distinct on (id) id, workspace_id, ord" \
	"   from unnest($1::uuid[], $2::uuid[]) with ordinality as u(id, workspace_id, ord)" \
	"   order by id, ord) h" \
	" cross join lateral (select * from infonchat.event_inbox e" \
	"  where e.id = h.id limit 1 for update of e skip locked) e" \
	" where e.workspace_id = h.workspace_id and" CLAIM_WHERE

#define CLAIM_SWEEP(cols) \
	" select " cols ", null::bigint as ord from infonchat.event_inbox e" \
	" where" CLAIM_WHERE \
	" order by e.next_attempt_at" \
	" limit $1" \
	" for update of e skip locked"

/* e is the table in the sweep and the probe's row (a record) by hints. */
#define CLAIMED_COLS \
	"e.id, e.workspace_id, e.role, e.next_attempt_at, e.routed_at," \
	" e.source_kind, e.event_type," \
	" infonchat.inbox_envelope(e::infonchat.event_inbox) as env"

/*
 * Routing, marking and the envelopes to pass on, in one statement (so one
 * round trip and one transaction per batch):
 *   candidates  agents of the event's own workspace whose role is the
 *            event's role or a prefix pattern ending in '*' that matches it
 *            (an agent with several matching roles counts once)
 *   locked_agents  those agents, locked FOR KEY SHARE once per batch:
 *            chats and runs have no foreign keys (sql/005), so this lock
 *            is what keeps an agent from being deleted between the match
 *            and the commit. An agent deleted by a transaction
 *            that committed meanwhile is not returned, and its events are
 *            not routed to it; one being deleted is waited for.
 *   matches  the candidates whose agent is locked, less those that
 *            already have a run for the event (a replay)
 *   chats    one per match
 *   runs     one queued run per match, with its chat
 *   outbox   the role event (unless routed_at says it was written before:
 *            a replay) and one agent_run.queued per run
 *   marked   processed
 * The result: one row per claimed event, then its outbox rows (with their
 * envelopes, see below) in seq order; events in id order.
 *
 * Every step reads one earlier step on its own (matches takes the few locked
 * agents as an array); no step joins two of them by key, so however the
 * planner misjudges a batch's size (it takes an array of ids for 10 rows)
 * nothing turns quadratic. The run check is a correlated probe of
 * agent_runs' unique (event_id, agent_id) index for the same reason, by
 * event_id alone (the event's runs are as few as its agents): naming
 * agent_id too let a plan made on empty tables take the index on agent_id
 * and read all of the agent's runs for every event. The mark goes by id
 * alone for the same reason: with the workspace_id too, such a plan and-ed
 * in the unique index led by workspace_id and read the whole workspace
 * every batch (both: test_worker PlanStability).
 *
 * While the event's inbox row is locked nobody else can insert its runs, so
 * the probe is exact; and should anyone insert one by hand meanwhile, the
 * unique constraint fails the batch (and the event is retried alone) rather
 * than a run being queued twice or a chat left without its run.
 */
#define ROUTE_TAIL(RET_ENV, OUT_ENV) \
	" candidates as materialized (" \
	"  select distinct on (c.id, r.agent_id) c.next_attempt_at, c.id as event_id," \
	"   c.workspace_id, r.agent_id, c.role, c.source_kind || ': ' || c.event_type as title" \
	"  from claimed c join infonchat.agent_roles r on r.workspace_id = c.workspace_id" \
	"   and (r.role = c.role or (right(r.role, 1) = '*'" \
	"    and starts_with(c.role, left(r.role, -1))))" \
	"  order by c.id, r.agent_id)," \
	" locked_agents as materialized (" \
	"  select a.id from infonchat.agents a" \
	"  where a.id = any (array(select distinct agent_id from candidates))" \
	"  for key share of a)," \
	" matches as materialized (" \
	"  select m.*, infonchat.uuid_v7() as run_id, infonchat.uuid_v7() as chat_id" \
	"  from candidates m" \
	"  where m.agent_id = any (array(select id from locked_agents))" \
	"   and m.agent_id <> all (array(select x.agent_id from infonchat.agent_runs x" \
	"        where x.event_id = m.event_id)))," \
	" chats as (" \
	"  insert into infonchat.chats (id, workspace_id, agent_id, event_id, title)" \
	"  select chat_id, workspace_id, agent_id, event_id, title from matches)," \
	" runs as (" \
	"  insert into infonchat.agent_runs (id, workspace_id, agent_id, chat_id, event_id, status)" \
	"  select run_id, workspace_id, agent_id, chat_id, event_id, 'queued' from matches" \
	"  order by event_id, agent_id)," \
	" outbox as (" \
	"  insert into infonchat.event_outbox as o (id, event_id, workspace_id, kind, topic, data)" \
	"  select infonchat.uuid_v7(), s.event_id, s.workspace_id, s.kind, s.workspace_id || '/' || s.kind, s.data" \
	"  from (select c.next_attempt_at, c.id as event_id, 0 as sub, null::uuid as agent_id," \
	"    c.workspace_id, c.role as kind, c.env as data" \
	"   from claimed c where c.routed_at is null" \
	"   union all" \
	"   select m.next_attempt_at, m.event_id, 1, m.agent_id, m.workspace_id," \
	"    'agent_run.queued'," \
	"    infonchat.agent_run_queued_data(m.run_id, m.chat_id, m.agent_id, m.event_id, m.role)" \
	"   from matches m) s" \
	"  order by s.next_attempt_at, s.event_id, s.sub, s.agent_id" \
	"  returning o.event_id, o.seq, o.kind = 'agent_run.queued' as is_run," \
	"   octet_length(o.data::text) as bytes, " RET_ENV ")," \
	" marked as (" \
	"  update infonchat.event_inbox e set status = 'processed', processed_at = now()," \
	"   routed_at = coalesce(e.routed_at, now())" \
	"  where e.id = any (array(select c.id from claimed c)))" \
	" select id, workspace_id, role, ord, is_run, env, bytes from (" \
	"  select c.id, c.workspace_id, c.role, c.ord, null::boolean as is_run, null::text as env," \
	"   null::int as bytes, 0 as sub, 0::bigint as seq from claimed c" \
	"  union all" \
	"  select o.event_id, null, null, null, o.is_run, " OUT_ENV ", o.bytes, 1, o.seq" \
	"  from outbox o) u" \
	" order by id, sub, seq"

/*
 * The envelopes the result carries: every outbox row's, for standard output
 * (the debug pipe passes them on), or only the batch's last one, for a
 * ZeroMQ --out: there they are hints, and outbox-relay, which reads its
 * rows from the table, needs one to look. Building, sending and reading the
 * envelope of every row (two of about 1.7 KB per event) cost about 12 us
 * of CPU per event, for nothing: PostgreSQL 7, the worker 3, the relay 2.
 * bytes, the size of each row's data, sizes the next batch either way.
 */
#define ENV_ALL_RET "infonchat.outbox_envelope(o) as env"
#define ENV_ALL_OUT "o.env"
#define ENV_LAST_RET "o as orow"
#define ENV_LAST_OUT \
	"case when o.seq = (select max(x.seq) from outbox x)" \
	" then infonchat.outbox_envelope(o.orow) end"

/* A route statement: CLAIM (CLAIM_IDS or CLAIM_SWEEP), then the tail, with ENV's envelopes. */
#define ROUTE_SQL(CLAIM, ENV) \
	"with claimed as materialized (" CLAIM(CLAIMED_COLS) ")," ROUTE_TAIL(ENV##_RET, ENV##_OUT)

static const char route_ids_all_sql[] = ROUTE_SQL(CLAIM_IDS, ENV_ALL);
static const char route_sweep_all_sql[] = ROUTE_SQL(CLAIM_SWEEP, ENV_ALL);
static const char route_ids_last_sql[] = ROUTE_SQL(CLAIM_IDS, ENV_LAST);
static const char route_sweep_last_sql[] = ROUTE_SQL(CLAIM_SWEEP, ENV_LAST);

/* The same claims without routing, for the row-by-row retry of a failed batch. */
static const char claim_ids_sql[] = CLAIM_IDS("e.id, e.workspace_id");
static const char claim_sweep_sql[] = CLAIM_SWEEP("e.id, e.workspace_id");

/*
 * A failed attempt: attempts + 1 and a backoff of $5 ms doubling per earlier
 * failure, at most an hour; dead once attempts reaches $4.
 */
static const char fail_sql[] =
    "update infonchat.event_inbox set attempts = attempts + 1, last_error = $3,"
    " status = case when attempts + 1 >= $4::int then 'dead' else 'pending' end,"
    " processed_at = case when attempts + 1 >= $4::int then now() else processed_at end,"
    " next_attempt_at = now() + least($5::float8 * power(2, least(attempts, 40)), 3600000)"
    "  * interval '1 millisecond'"
    " where id = $1 and workspace_id = $2"
    " returning status, attempts,"
    "  round(extract(epoch from next_attempt_at - now()) * 1000)::bigint";

/* Where the events of a request that were not claimed stand. */
static const char status_sql[] =
    "select h.ord, e.status, e.next_attempt_at > now()"
    " from unnest($1::uuid[], $2::uuid[]) with ordinality as h(id, workspace_id, ord)"
    " left join infonchat.event_inbox e on e.id = h.id and e.workspace_id = h.workspace_id";

int
route_prepare(PGconn *conn, void *arg)
{
	const enum route_envelopes *which = arg;
	int all = which == NULL || *which == ENVELOPES_ALL;
	const struct db_statement statements[] = {
		{ "route_ids", all ? route_ids_all_sql : route_ids_last_sql, 2 },
		{ "route_sweep", all ? route_sweep_all_sql : route_sweep_last_sql, 1 },
		{ "claim_ids", claim_ids_sql, 2 },
		{ "claim_sweep", claim_sweep_sql, 1 },
		{ "fail_mark", fail_sql, 5 },
		{ "status_ids", status_sql, 2 },
	};

	/* Compiling a batch's statement would cost more than running it. */
	if (db_command(conn, "set jit = off") < 0)
		return -1;
	return db_prepare_all(conn, statements, sizeof statements / sizeof statements[0]);
}

/* ---- outcome: what a batch did, logged once it is committed ------------ */

enum rec_state { REC_ROUTED, REC_RETRY, REC_DEAD };

struct event_rec {
	char id[UUID_LEN + 1];
	char workspace_id[UUID_LEN + 1];
	size_t role;              /* offset in text */
	size_t err;               /* offset in text; SIZE_MAX: none */
	enum rec_state state;
	unsigned runs, outbox;
	long attempts;
	long long retry_ms;
};

static size_t
rec_str(struct lane *l, const char *s)
{
	size_t off = l->rtext.len;

	if (buf_puts(&l->rtext, s) < 0 || buf_putc(&l->rtext, '\0') < 0)
		return SIZE_MAX;
	return off;
}

static const char *
rec_text(const struct lane *l, size_t off)
{
	return off == SIZE_MAX || l->rtext.p == NULL ? "" : l->rtext.p + off;
}

/* A new record, or NULL when memory ran out (the event is then not logged). */
static struct event_rec *
rec_add(struct lane *l, const char *id, const char *ws, const char *role)
{
	struct event_rec *e;

	if (l->nrecs == l->caprecs) {
		size_t cap = l->caprecs ? l->caprecs * 2 : 64;
		struct event_rec *v = realloc(l->recs, cap * sizeof *v);

		if (v == NULL)
			return NULL;
		l->recs = v;
		l->caprecs = cap;
	}
	e = &l->recs[l->nrecs++];
	memset(e, 0, sizeof *e);
	snprintf(e->id, sizeof e->id, "%s", id);
	snprintf(e->workspace_id, sizeof e->workspace_id, "%s", ws);
	e->role = rec_str(l, role);
	e->err = SIZE_MAX;
	return e;
}

static void
outcome_reset(struct lane *l)
{
	buf_reset(&l->out.envs);
	l->out.nenvs = l->out.events = l->out.bytes = 0;
	l->out.routed = l->out.runs = l->out.retried = l->out.dead = 0;
	l->nrecs = 0;
	buf_reset(&l->rtext);
}

/* Log every event of the committed batch and count them in l->out. */
static void
outcome_log(struct lane *l)
{
	for (size_t i = 0; i < l->nrecs; i++) {
		const struct event_rec *e = &l->recs[i];

		l->out.events++;
		switch (e->state) {
		case REC_ROUTED:
			l->out.routed++;
			l->out.runs += e->runs;
			log_info("event routed", " id=%s workspace_id=%s role=%s runs=%u outbox=%u",
			    e->id, e->workspace_id, log_q(rec_text(l, e->role)), e->runs, e->outbox);
			break;
		case REC_RETRY:
			l->out.retried++;
			log_warn("event failed, will retry", " id=%s workspace_id=%s attempts=%ld retry_in_ms=%lld err=%s",
			    e->id, e->workspace_id, e->attempts, e->retry_ms, log_q(rec_text(l, e->err)));
			break;
		case REC_DEAD:
			l->out.dead++;
			log_error("event dead", " id=%s workspace_id=%s attempts=%ld err=%s",
			    e->id, e->workspace_id, e->attempts, log_q(rec_text(l, e->err)));
			break;
		}
	}
}

static void
mark_claimed(struct lane *l, const PGresult *r, int row, int col)
{
	long ord;

	if (PQgetisnull(r, row, col))
		return;
	ord = strtol(PQgetvalue(r, row, col), NULL, 10);
	if (ord >= 1 && (size_t)ord <= l->nreq)
		l->req[ord - 1].claimed = 1;
}

/*
 * Take a route statement's rows into records and envelopes: per event, a row
 * (id, workspace_id, role, ord) and then its outbox rows (id, ..., is_run,
 * env or null, bytes). Returns 0, or -1 when memory ran out.
 */
static int
read_routed(struct lane *l, const PGresult *r)
{
	struct event_rec *cur = NULL;
	int n = PQntuples(r);

	for (int i = 0; i < n; i++) {
		if (PQgetisnull(r, i, 4)) {
			cur = rec_add(l, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
			if (cur == NULL)
				return -1;
			cur->state = REC_ROUTED;
			mark_claimed(l, r, i, 3);
			continue;
		}
		if (cur == NULL || strcmp(cur->id, PQgetvalue(r, i, 0)) != 0)
			continue;      /* cannot happen: every event's row comes first */
		cur->outbox++;
		if (PQgetvalue(r, i, 4)[0] == 't')
			cur->runs++;
		l->out.bytes += strtoull(PQgetvalue(r, i, 6), NULL, 10);
		if (PQgetisnull(r, i, 5))
			continue;
		if (buf_append(&l->out.envs, PQgetvalue(r, i, 5), (size_t)PQgetlength(r, i, 5)) < 0 ||
		    buf_putc(&l->out.envs, '\n') < 0)
			return -1;
		l->out.nenvs++;
	}
	return l->rtext.failed ? -1 : 0;
}

/* ---- errors -------------------------------------------------------------- */

/*
 * SQLSTATE classes that no event causes (connection, resources, operator,
 * configuration, the schema, internal errors): the batch is tried again
 * later and nobody's attempts are counted. Everything else (data errors,
 * constraint violations, an exception raised by a trigger, ...) is put down
 * to the events of the batch and isolated row by row.
 */
static int
environment_error(const char *sqlstate)
{
	static const char *const classes[] = {
		"08", "25", "28", "3D", "3F", "42", "53", "55", "57", "58", "F0", "XX",
	};

	if (strlen(sqlstate) != 5)
		return 1;
	for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
		if (strncmp(sqlstate, classes[i], 2) == 0)
			return 1;
	return 0;
}

static int
retry_now_error(const char *sqlstate)
{
	return strncmp(sqlstate, "40", 2) == 0;   /* serialization failure, deadlock */
}

/* Run a command without results; returns 0, or -1 with *res kept for the caller. */
static int
exec_cmd(PGconn *conn, const char *sql, PGresult **res)
{
	PGresult *r = PQexec(conn, sql);

	if (PQresultStatus(r) == PGRES_COMMAND_OK) {
		PQclear(r);
		return 0;
	}
	*res = r;
	return -1;
}

static enum lane_status
failed_status(struct lane *l, PGresult *r, const char *what)
{
	enum lane_status st;

	if (db_connection_lost(l->conn, r)) {
		log_warn("database connection lost", " during=%s err=%s", what,
		    log_q(db_error(l->conn, r)));
		st = LANE_LOST;
	} else {
		log_error("batch refused by the database, will try again", " during=%s sqlstate=%s err=%s",
		    what, db_sqlstate(r), log_q(db_error(l->conn, r)));
		st = LANE_PAUSE;
	}
	PQclear(r);
	return st;
}

/* Record a failed attempt of one event (inside the isolation transaction). */
static int
fail_event(struct lane *l, const struct route_cfg *cfg, const char *id,
    const char *ws, const char *err, PGresult **res)
{
	char maxa[24], delay[24];
	const char *values[5] = { id, ws, err, maxa, delay };
	PGresult *r;
	struct event_rec *e;

	snprintf(maxa, sizeof maxa, "%lld", cfg->max_attempts);
	snprintf(delay, sizeof delay, "%lld", cfg->retry_delay_ms);
	r = PQexecPrepared(l->conn, "fail_mark", 5, values, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		*res = r;
		return -1;
	}
	if (PQntuples(r) == 1 && (e = rec_add(l, id, ws, "")) != NULL) {
		e->state = strcmp(PQgetvalue(r, 0, 0), "dead") == 0 ? REC_DEAD : REC_RETRY;
		e->attempts = strtol(PQgetvalue(r, 0, 1), NULL, 10);
		e->retry_ms = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
		e->err = rec_str(l, err);
	}
	PQclear(r);
	return 0;
}

/*
 * last_error: the server's message without its "ERROR:" prefix, and the
 * SQLSTATE; cut to fit out (n > 0) at a character boundary, since the column
 * takes only valid UTF-8.
 */
static void
error_text(PGconn *conn, const PGresult *r, char *out, size_t n)
{
	const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	const char *st = db_sqlstate(r);
	int k = snprintf(out, n, "%s (SQLSTATE %s)", m ? m : db_error(conn, r), st);
	size_t len;

	if (k < 0) {
		snprintf(out, n, "SQLSTATE %s", st);
		return;
	}
	len = (size_t)k < n ? (size_t)k : n - 1;
	while (len > 0 && !utf8_valid(out, len))
		len--;
	out[len] = '\0';
}

/*
 * The batch failed for something an event can cause: claim it again in one
 * transaction and route every event alone in a savepoint, so the good ones
 * go through and each bad one gets its failed attempt.
 */
static enum lane_status
isolate(struct lane *l, const struct route_cfg *cfg, const char **values, int nvalues)
{
	PGconn *c = l->conn;
	PGresult *claim = NULL, *r = NULL;
	const char *what = "claim";
	int n;

	outcome_reset(l);
	if (exec_cmd(c, "begin", &r) < 0)
		return failed_status(l, r, "begin");
	claim = PQexecPrepared(c, l->kind == LANE_IDS ? "claim_ids" : "claim_sweep",
	    nvalues, values, NULL, NULL, 0);
	if (PQresultStatus(claim) != PGRES_TUPLES_OK) {
		r = claim;
		claim = NULL;
		goto fail;
	}
	n = PQntuples(claim);
	log_warn("batch failed, routing its events one by one", " events=%d", n);
	for (int i = 0; i < n; i++) {
		char ids[UUID_LEN + 3], wss[UUID_LEN + 3], err[600];
		const char *one[2] = { ids, wss };
		int retry;

		snprintf(ids, sizeof ids, "{%s}", PQgetvalue(claim, i, 0));
		snprintf(wss, sizeof wss, "{%s}", PQgetvalue(claim, i, 1));
		mark_claimed(l, claim, i, 2);
		what = "savepoint";
		if (exec_cmd(c, "savepoint one_event", &r) < 0)
			goto fail;
		what = "route";
		r = PQexecPrepared(c, "route_ids", 2, one, NULL, NULL, 0);
		if (PQresultStatus(r) == PGRES_TUPLES_OK) {
			int bad = read_routed(l, r);

			PQclear(r);
			r = NULL;
			if (bad < 0) {
				log_error("out of memory reading a batch", "%s", "");
				PQclear(PQexec(c, "rollback"));
				PQclear(claim);
				outcome_reset(l);
				return LANE_PAUSE;
			}
			what = "release";
			if (exec_cmd(c, "release savepoint one_event", &r) < 0)
				goto fail;
			continue;
		}
		if (db_connection_lost(c, r) || environment_error(db_sqlstate(r)))
			goto fail;
		error_text(c, r, err, sizeof err);
		retry = retry_now_error(db_sqlstate(r));
		PQclear(r);
		r = NULL;
		what = "rollback to savepoint";
		if (exec_cmd(c, "rollback to savepoint one_event", &r) < 0)
			goto fail;
		if (retry) {
			/* not this event's fault: it stays pending for the next batch */
			continue;
		}
		what = "record failure";
		if (fail_event(l, cfg, PQgetvalue(claim, i, 0), PQgetvalue(claim, i, 1), err, &r) == 0)
			continue;
		if (db_connection_lost(c, r) || environment_error(db_sqlstate(r)))
			goto fail;
		/* e.g. a trigger refuses the update: leave the event as it was */
		log_error("cannot record a failed attempt; the event stays pending", " id=%s err=%s",
		    PQgetvalue(claim, i, 0), log_q(db_error(c, r)));
		PQclear(r);
		r = NULL;
		what = "rollback to savepoint";
		if (exec_cmd(c, "rollback to savepoint one_event", &r) < 0)
			goto fail;
	}
	PQclear(claim);
	claim = NULL;
	what = "commit";
	if (exec_cmd(c, "commit", &r) < 0)
		goto fail;
	outcome_log(l);
	return LANE_OK;
fail:
	PQclear(claim);
	if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
		PGresult *rb = PQexec(c, "rollback");
		PQclear(rb);
	}
	outcome_reset(l);
	return failed_status(l, r, what);
}

/* ---- lanes ----------------------------------------------------------------- */

void
lane_init(struct lane *l)
{
	memset(l, 0, sizeof *l);
	buf_init(&l->p_ids, 0);
	buf_init(&l->p_wss, 0);
	buf_init(&l->out.envs, 0);
	buf_init(&l->rtext, 0);
}

void
lane_free(struct lane *l)
{
	PQfinish(l->conn);
	l->conn = NULL;
	free(l->req);
	buf_free(&l->p_ids);
	buf_free(&l->p_wss);
	buf_free(&l->out.envs);
	free(l->recs);
	buf_free(&l->rtext);
	l->recs = NULL;
	l->req = NULL;
}

int
lane_reserve(struct lane *l, size_t n)
{
	struct hint *v;

	if (n <= l->capreq)
		return 0;
	v = realloc(l->req, n * sizeof *v);
	if (v == NULL)
		return -1;
	l->req = v;
	l->capreq = n;
	return 0;
}

/* The statement's parameters for l's request. Returns the count, or -1. */
static int
lane_params(struct lane *l, const struct route_cfg *cfg, const char **values, char *limit,
    size_t limitlen)
{
	if (l->kind == LANE_SWEEP) {
		snprintf(limit, limitlen, "%lld", cfg->batch_max);
		values[0] = limit;
		return 1;
	}
	buf_reset(&l->p_ids);
	buf_reset(&l->p_wss);
	buf_putc(&l->p_ids, '{');
	buf_putc(&l->p_wss, '{');
	for (size_t i = 0; i < l->nreq; i++) {
		buf_printf(&l->p_ids, "%s%s", i ? "," : "", l->req[i].id);
		buf_printf(&l->p_wss, "%s%s", i ? "," : "", l->req[i].workspace_id);
	}
	buf_putc(&l->p_ids, '}');
	buf_putc(&l->p_wss, '}');
	if (l->p_ids.failed || l->p_wss.failed)
		return -1;
	values[0] = l->p_ids.p;
	values[1] = l->p_wss.p;
	return 2;
}

int
lane_send(struct lane *l, enum lane_kind kind, const struct route_cfg *cfg)
{
	const char *values[2];
	char limit[24];
	int n;

	l->kind = kind;
	for (size_t i = 0; i < l->nreq; i++)
		l->req[i].claimed = 0;
	n = lane_params(l, cfg, values, limit, sizeof limit);
	if (n < 0 || l->conn == NULL)
		return -1;
	CRASH_POINT("worker.before-commit");
	if (!PQsendQueryPrepared(l->conn, kind == LANE_IDS ? "route_ids" : "route_sweep",
	    n, values, NULL, NULL, 0)) {
		log_warn("database connection lost", " err=%s", log_q(db_error(l->conn, NULL)));
		return -1;
	}
	l->busy = 1;
	return 0;
}

enum lane_status
lane_complete(struct lane *l, const struct route_cfg *cfg)
{
	const char *values[2];
	char limit[24];
	PGresult *r, *extra;
	int n;

	l->busy = 0;
	outcome_reset(l);
	r = PQgetResult(l->conn);
	while ((extra = PQgetResult(l->conn)) != NULL)
		PQclear(extra);
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		int bad = read_routed(l, r);

		PQclear(r);
		if (l->nrecs > 0)
			CRASH_POINT("worker.after-commit");
		/* Committed already: log it even if some envelopes did not fit. */
		if (bad < 0)
			log_error("out of memory reading a batch; its hints are lost", "%s", "");
		outcome_log(l);
		return LANE_OK;
	}
	if (db_connection_lost(l->conn, r) || environment_error(db_sqlstate(r)) ||
	    retry_now_error(db_sqlstate(r)))
		return failed_status(l, r, "route");
	log_info("batch failed", " sqlstate=%s err=%s", db_sqlstate(r), log_q(db_error(l->conn, r)));
	PQclear(r);
	n = lane_params(l, cfg, values, limit, sizeof limit);
	if (n < 0)
		return LANE_PAUSE;
	return isolate(l, cfg, values, n);
}

enum lane_status
lane_run(struct lane *l, enum lane_kind kind, const struct route_cfg *cfg)
{
	if (lane_send(l, kind, cfg) < 0)
		return LANE_LOST;
	return lane_complete(l, cfg);
}

/* A " line=N" suffix for events that came from stdin. */
static const char *
where(const struct hint *h, char *buf, size_t n)
{
	if (h->lineno <= 0)
		return "";
	snprintf(buf, n, " line=%ld", h->lineno);
	return buf;
}

int
lane_report(struct lane *l, size_t *missing)
{
	struct lane tmp;
	const char *values[2];
	char limit[24];
	struct route_cfg none = { 0, 0, 0 };
	size_t *map = NULL, nmap = 0;
	PGresult *r;
	int rc = 0;

	*missing = 0;
	for (size_t i = 0; i < l->nreq; i++)
		nmap += !l->req[i].claimed;
	if (nmap == 0)
		return 0;
	map = calloc(nmap, sizeof *map);
	lane_init(&tmp);
	if (map == NULL || lane_reserve(&tmp, nmap) < 0) {
		free(map);
		lane_free(&tmp);
		return -1;
	}
	nmap = 0;
	for (size_t i = 0; i < l->nreq; i++)
		if (!l->req[i].claimed) {
			map[nmap] = i;
			tmp.req[nmap++] = l->req[i];
		}
	tmp.nreq = nmap;
	tmp.kind = LANE_IDS;
	if (lane_params(&tmp, &none, values, limit, sizeof limit) < 0) {
		rc = -1;
		goto out;
	}
	r = PQexecPrepared(l->conn, "status_ids", 2, values, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = db_connection_lost(l->conn, r) ? -2 : -1;
		log_warn("cannot look up events", " err=%s", log_q(db_error(l->conn, r)));
		PQclear(r);
		goto out;
	}
	for (int t = 0; t < PQntuples(r); t++) {
		long ord = strtol(PQgetvalue(r, t, 0), NULL, 10);
		const struct hint *h;
		char wb[32];

		if (ord < 1 || (size_t)ord > nmap)
			continue;
		h = &l->req[map[ord - 1]];
		if (PQgetisnull(r, t, 1)) {
			(*missing)++;
			log_error("event not in database", " id=%s workspace_id=%s%s",
			    h->id, h->workspace_id, where(h, wb, sizeof wb));
		} else if (strcmp(PQgetvalue(r, t, 1), "pending") != 0) {
			log_info("event not pending", " id=%s workspace_id=%s status=%s%s",
			    h->id, h->workspace_id, PQgetvalue(r, t, 1), where(h, wb, sizeof wb));
		} else if (PQgetvalue(r, t, 2)[0] == 't') {
			log_info("event waiting for its retry", " id=%s workspace_id=%s%s",
			    h->id, h->workspace_id, where(h, wb, sizeof wb));
		} else {
			log_info("event taken by another worker", " id=%s workspace_id=%s%s",
			    h->id, h->workspace_id, where(h, wb, sizeof wb));
		}
	}
	PQclear(r);
out:
	tmp.conn = NULL;
	lane_free(&tmp);
	free(map);
	return rc;
}
