/*
 * route.h: one database connection that claims pending inbox events and
 * routes them, each batch in one transaction (sql/003_inbox_worker.sql has
 * the states; inbox-worker(1) the rules).
 *
 * A lane sends one statement per batch: it claims the rows (by the ids of
 * hints, or oldest first), creates the chats, agent runs and outbox rows,
 * marks the rows processed and returns the outbox envelopes, all at once in
 * an implicit transaction. When that statement fails for something an event
 * can cause, the batch is claimed again in an explicit transaction and every
 * event is routed alone in a savepoint; the ones that fail get attempts + 1
 * and a backoff, or become dead. Every decision about an event is logged
 * here, one line with its id.
 *
 * Nothing is cached: agent_roles is read by every batch, so a change to it
 * applies to the next batch that starts after its commit.
 */
#ifndef WORKER_ROUTE_H
#define WORKER_ROUTE_H

#include <stddef.h>

#include <libpq-fe.h>

#include "buf.h"
#include "uuid.h"

struct route_cfg {
	long long batch_max;      /* most events claimed by one batch */
	long long max_attempts;   /* failed attempts until dead */
	long long retry_delay_ms; /* first backoff; doubles per failure, at most an hour */
};

/* An event named by a hint (or a stdin line, or a replay). */
struct hint {
	char id[UUID_LEN + 1];
	char workspace_id[UUID_LEN + 1];
	long lineno;              /* stdin line, else 0 */
	int claimed;              /* set when a batch routed or failed it */
};

enum lane_kind { LANE_IDS, LANE_SWEEP };

/*
 * Which outbox envelopes a batch returns (route_prepare's argument):
 * every one (standard output), or only the last one of each batch (a
 * ZeroMQ --out, where they are hints). NULL means every one.
 */
enum route_envelopes { ENVELOPES_ALL, ENVELOPES_LAST };

/* What a finished batch did; the caller emits envs once it has returned. */
struct outcome {
	struct buf envs;          /* committed outbox envelopes, each ending in "\n" */
	size_t nenvs;
	size_t bytes;             /* the data of every outbox row it made */
	size_t events;            /* claimed */
	size_t routed, runs, retried, dead;
};

struct event_rec;             /* route.c: one event's fate in the batch */

struct lane {
	PGconn *conn;
	int busy;                 /* a batch's statement awaits its result */
	enum lane_kind kind;
	struct hint *req;         /* LANE_IDS: the events asked for (owned) */
	size_t nreq, capreq;
	struct buf p_ids, p_wss;  /* parameters as array literals */
	struct outcome out;
	struct event_rec *recs;   /* what happened to each event, logged after commit */
	size_t nrecs, caprecs;
	struct buf rtext;         /* the records' roles and errors */
};

enum lane_status {
	LANE_OK,                  /* done; out says what happened */
	LANE_LOST,                /* connection gone: reconnect, send the same request again */
	LANE_PAUSE                /* the database refused for reasons no event causes: wait, send again */
};

void lane_init(struct lane *l);
void lane_free(struct lane *l);

/*
 * Prepare the statements on a fresh connection (db_connect_retry setup
 * hook); arg points to an enum route_envelopes.
 */
int route_prepare(PGconn *conn, void *arg);

/*
 * Start a batch on l->conn without waiting: the events in l->req[0..nreq)
 * (LANE_IDS, filled by the caller; duplicates are fine) or the oldest due
 * pending rows (LANE_SWEEP). Returns 0, or -1 when the connection is lost.
 */
int lane_send(struct lane *l, enum lane_kind kind, const struct route_cfg *cfg);

/*
 * Finish the batch once PQisBusy() is false (or block until it is): read
 * the result into l->out, or isolate the failing events. LANE_OK also sets
 * req[i].claimed for the events that were pending and claimed.
 */
enum lane_status lane_complete(struct lane *l, const struct route_cfg *cfg);

/* lane_send() then lane_complete(), blocking. */
enum lane_status lane_run(struct lane *l, enum lane_kind kind, const struct route_cfg *cfg);

/*
 * After a LANE_IDS batch: log, one line each, why the requested events that
 * were not claimed were not (not in the database, not pending, waiting for
 * a retry, taken by another worker); *missing counts those not in the
 * database. Returns 0, -1 on failure, -2 when the connection is lost.
 */
int lane_report(struct lane *l, size_t *missing);

/* Make room for n requests in l->req. Returns 0 or -1 (out of memory). */
int lane_reserve(struct lane *l, size_t n);

#endif
