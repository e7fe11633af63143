/*
 * db.h: PostgreSQL connections that come back.
 *
 * A stage holds one connection. When a query fails because the connection
 * is gone (SQLSTATE class 08, admin shutdown, or PQstatus bad) the stage
 * keeps its work, calls db_reconnect() and tries again; nothing is dropped.
 */
#ifndef INFONCHAT_DB_H
#define INFONCHAT_DB_H

#include <signal.h>
#include <libpq-fe.h>

/*
 * Connect, retrying with exponential backoff (100 ms doubling to 5 s) and one
 * log line per failed try, until connected or *stop becomes non-zero (then
 * NULL). application_name is set to app. Each new connection runs setup(conn,
 * arg) when setup is not NULL; a failing setup counts as a failed try.
 */
PGconn *db_connect_retry(const char *conninfo, const char *app,
    volatile sig_atomic_t *stop, int (*setup)(PGconn *, void *), void *arg);

/* True when res (may be NULL) failed because the connection is unusable. */
int db_connection_lost(PGconn *conn, const PGresult *res);

/* The result's SQLSTATE, or "" when it has none. */
const char *db_sqlstate(const PGresult *res);

/* The first line of the error message of res (or of conn when res is NULL). */
const char *db_error(PGconn *conn, const PGresult *res);

/* A statement to prepare on every new connection. */
struct db_statement {
	const char *name;
	const char *sql;
	int nparams;
};

/* Prepare s[0..n) on conn, with sequential scans off and generic plans for
 * the session (see db.c). Returns 0, or -1 after logging the one that failed. */
int db_prepare_all(PGconn *conn, const struct db_statement *s, size_t n);

/* Run a command that returns no rows (a SET, say). Returns 0, or -1 after logging. */
int db_command(PGconn *conn, const char *sql);

/* Sleep ms milliseconds unless *stop becomes non-zero first (checked each 50 ms). */
void db_sleep(long ms, volatile sig_atomic_t *stop);

#endif
