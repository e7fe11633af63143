#include "db.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

void
db_sleep(long ms, volatile sig_atomic_t *stop)
{
	while (ms > 0 && !(stop && *stop)) {
		long step = ms < 50 ? ms : 50;
		struct timespec ts = { 0, step * 1000000L };

		nanosleep(&ts, NULL);
		ms -= step;
	}
}

const char *
db_sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	return s ? s : "";
}

const char *
db_error(PGconn *conn, const PGresult *res)
{
	static char msg[512];
	const char *m = res ? PQresultErrorMessage(res) : NULL;
	size_t n;

	if (m == NULL || *m == '\0')
		m = conn ? PQerrorMessage(conn) : "no connection";
	n = strcspn(m, "\n");
	if (n >= sizeof msg)
		n = sizeof msg - 1;
	memcpy(msg, m, n);
	msg[n] = '\0';
	return msg;
}

int
db_connection_lost(PGconn *conn, const PGresult *res)
{
	const char *st = db_sqlstate(res);

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		return 1;
	if (res == NULL)
		return 1;
	/* 08: connection exception; 57P01-03: admin/crash shutdown, cannot connect now. */
	return strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0 ||
	    (*st == '\0' && PQresultStatus(res) == PGRES_FATAL_ERROR);
}

PGconn *
db_connect_retry(const char *conninfo, const char *app,
    volatile sig_atomic_t *stop, int (*setup)(PGconn *, void *), void *arg)
{
	const char *keys[] = { "dbname", "application_name", NULL };
	const char *vals[] = { conninfo ? conninfo : "", app, NULL };
	long backoff = 100;
	unsigned tries = 0;

	while (!(stop && *stop)) {
		/* expand_dbname=1: dbname may hold a whole conninfo string or URI. */
		PGconn *c = PQconnectdbParams(keys, vals, 1);

		tries++;
		if (c != NULL && PQstatus(c) == CONNECTION_OK &&
		    (setup == NULL || setup(c, arg) == 0)) {
			if (tries > 1)
				log_info("database connected", " tries=%u", tries);
			return c;
		}
		log_warn("database unavailable", " try=%u retry_ms=%ld err=%s",
		    tries, backoff, log_q(c ? db_error(c, NULL) : "out of memory"));
		PQfinish(c);
		db_sleep(backoff, stop);
		backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
	}
	return NULL;
}

/*
 * A prepared statement is planned for generic parameters after a few runs,
 * and that plan is kept until the statistics of its tables change. A stage
 * prepares its statements when it connects, often to tables that are empty
 * or nearly so, where reading the whole table is the cheapest plan; kept
 * while the table grows a hundredfold before autovacuum's next ANALYZE, it
 * made every batch cost in proportion to the table (a worker that fell
 * behind fell further behind). Every statement of the pipeline reaches its
 * rows through an index, so sequential scans are off for the session: the
 * planner takes them only where no index serves.
 *
 * The plans are generic from the first run. Left to choose, PostgreSQL
 * planned inbox-writer's insert anew for every batch (the size of its
 * arrays makes each custom plan look cheaper than the generic one): a
 * quarter of the server's CPU for the one- or two-row batches of a quiet
 * hour (about 90 of 350 us an event at 1,000 events/s). The plans it would
 * make are the same ones; the tests that take plans made on empty tables
 * (PlanStability) force generic plans too.
 */
int
db_prepare_all(PGconn *conn, const struct db_statement *s, size_t n)
{
	if (db_command(conn, "set enable_seqscan = off") < 0 ||
	    db_command(conn, "set plan_cache_mode = force_generic_plan") < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		PGresult *r = PQprepare(conn, s[i].name, s[i].sql, s[i].nparams, NULL);
		int ok = PQresultStatus(r) == PGRES_COMMAND_OK;

		if (!ok)
			log_error("cannot prepare statement", " name=%s err=%s", s[i].name,
			    log_q(db_error(conn, r)));
		PQclear(r);
		if (!ok)
			return -1;
	}
	return 0;
}

int
db_command(PGconn *conn, const char *sql)
{
	PGresult *r = PQexec(conn, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;

	if (!ok)
		log_error("database command failed", " sql=%s err=%s", log_q(sql),
		    log_q(db_error(conn, r)));
	PQclear(r);
	return ok ? 0 : -1;
}
