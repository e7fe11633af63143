/*
 * retention.c: see retention.h. The inbox batch takes its rows oldest first
 * by event_inbox_received_at_idx. The outbox batch is for the published rows
 * of inbox rows that stay (replayed, say), as the inbox batches already
 * removed the others with their event: it starts from the old inbox rows
 * left, by the same index, and finds their outbox rows by event_id. (An
 * outbox row is published after its event was received, so an old one
 * always has an old event; event_outbox has no index on published_at, and
 * looking there read the whole outbox every cycle.)
 *
 * The statements are planned when they run, on whatever the statistics say
 * (on a young table's, a sequential scan looks cheapest), so the connection
 * turns sequential scans off: every table they read has the index they need
 * (test_retention RetentionPlans).
 */
#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "log.h"
#include "retention.h"

static const char inbox_sql[] =
    "with gone as (delete from infonchat.event_inbox where id in ("
    " select i.id from infonchat.event_inbox i"
    " where i.received_at < now() - make_interval(days => $1::int)"
    " and i.status = 'processed'"
    " and i.processed_at < now() - make_interval(days => $1::int)"
    " and not exists (select 1 from infonchat.event_outbox o"
    "  where o.event_id = i.id and o.published_at is null)"
    " order by i.received_at limit $2::int"
    " for update of i skip locked) returning 1)"
    " select count(*) from gone";

static const char outbox_sql[] =
    "with gone as (delete from infonchat.event_outbox where id in ("
    " select o.id from infonchat.event_inbox i"
    " join infonchat.event_outbox o on o.event_id = i.id"
    " where i.received_at < now() - make_interval(days => $1::int)"
    " and o.published_at < now() - make_interval(days => $1::int)"
    " limit $2::int for update of o skip locked) returning 1)"
    " select count(*) from gone";

/* Wait this long after a failure before the next cycle. */
#define RETRY_MS (60LL * 1000)

void
retention_init(struct retention *r, const char *conninfo, long long days)
{
	*r = (struct retention){ .days = days, .conninfo = conninfo };
}

int
retention_fd(const struct retention *r)
{
	return r->busy ? PQsocket(r->conn) : -1;
}

long long
retention_due(const struct retention *r)
{
	return r->days == 0 || r->busy ? -1 : r->next;
}

static void
fail(struct retention *r, long long now, const char *what, const PGresult *res)
{
	log_warn("retention: batch failed; next try in a minute", " step=%s err=%s", what,
	    log_q(db_error(r->conn, res)));
	if (r->conn != NULL && db_connection_lost(r->conn, res)) {
		PQfinish(r->conn);
		r->conn = NULL;
	}
	r->busy = 0;
	r->phase = 0;
	r->next = now + RETRY_MS;
}

/*
 * A connection of its own, made when a cycle starts. Blocking, but only
 * every few minutes and quickly over a local socket; when the database is
 * down, routing waits for it anyway.
 */
static int
connect_once(struct retention *r, long long now)
{
	PGresult *res;

	if (r->conn != NULL)
		return 0;
	r->conn = PQconnectdb(r->conninfo != NULL ? r->conninfo : "");
	if (PQstatus(r->conn) != CONNECTION_OK) {
		fail(r, now, "connect", NULL);
		PQfinish(r->conn);
		r->conn = NULL;
		return -1;
	}
	/* A batch never waits long for a lock, nor runs long. */
	res = PQexec(r->conn, "set application_name = 'inbox-worker retention';"
	    " set lock_timeout = '2s'; set statement_timeout = '60s'; set enable_seqscan = off");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fail(r, now, "connect", res);
		PQclear(res);
		PQfinish(r->conn);
		r->conn = NULL;
		return -1;
	}
	PQclear(res);
	return 0;
}

void
retention_step(struct retention *r, long long now)
{
	char days[24], limit[24];
	const char *params[2] = { days, limit };

	if (r->days == 0 || r->busy || now < r->next)
		return;
	if (r->phase == 0) {
		if (connect_once(r, now) < 0)
			return;
		r->phase = 1;
		r->inbox = r->outbox = 0;
	}
	snprintf(days, sizeof days, "%lld", r->days);
	snprintf(limit, sizeof limit, "%d", RETENTION_BATCH);
	if (!PQsendQueryParams(r->conn, r->phase == 1 ? inbox_sql : outbox_sql, 2, NULL,
	    params, NULL, NULL, 0)) {
		fail(r, now, r->phase == 1 ? "inbox" : "outbox", NULL);
		return;
	}
	r->busy = 1;
}

void
retention_handle(struct retention *r, long long now)
{
	PGresult *res, *bad = NULL;
	long long n = 0;

	if (!r->busy)
		return;
	if (!PQconsumeInput(r->conn)) {
		fail(r, now, r->phase == 1 ? "inbox" : "outbox", NULL);
		return;
	}
	if (PQisBusy(r->conn))
		return;
	while ((res = PQgetResult(r->conn)) != NULL) {
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
			n = atoll(PQgetvalue(res, 0, 0));
		else if (bad == NULL)
			bad = res, res = NULL;
		PQclear(res);
	}
	r->busy = 0;
	if (bad != NULL) {
		fail(r, now, r->phase == 1 ? "inbox" : "outbox", bad);
		PQclear(bad);
		return;
	}
	if (r->phase == 1)
		r->inbox += n;
	else
		r->outbox += n;
	r->next = now + RETENTION_GAP_MS;
	if (n >= RETENTION_BATCH)
		return;                 /* more of the same */
	if (r->phase == 1) {
		r->phase = 2;
		return;
	}
	if (r->inbox > 0 || r->outbox > 0)
		log_info("retention: deleted", " days=%lld inbox=%lld outbox=%lld", r->days,
		    r->inbox, r->outbox);
	else
		log_debug("retention: nothing old enough", " days=%lld", r->days);
	r->phase = 0;
	r->next = now + RETENTION_CYCLE_MS;
}

void
retention_free(struct retention *r)
{
	if (r->conn != NULL)
		PQfinish(r->conn);      /* a batch in flight rolls back */
	r->conn = NULL;
	r->busy = 0;
}
