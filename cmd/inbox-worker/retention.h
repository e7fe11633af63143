/*
 * retention.h: delete what the pipeline no longer needs (--retention-days).
 *
 * Processed inbox rows and published outbox rows older than the retention
 * age are deleted in batches of RETENTION_BATCH rows, each batch one short
 * autocommit statement on a connection of its own, whose rows are taken
 * with FOR UPDATE SKIP LOCKED: it never waits for a row another transaction
 * holds, and never holds a lock longer than one batch. Deleting an inbox row
 * deletes its outbox rows (foreign key, cascade) and leaves chats and agent
 * runs (their event_id becomes null). Kept whatever their age: pending and
 * dead inbox rows, and inbox rows with an unpublished outbox row.
 *
 * The main loop drives it: retention_step() sends the next batch when one
 * is due and none is in flight, retention_handle() takes its result when
 * retention_fd() is readable. A cycle (inbox batches until one comes back
 * short, then outbox batches likewise) starts when the worker starts and
 * every RETENTION_CYCLE_MS after; batches of a cycle are RETENTION_GAP_MS
 * apart, so routing always gets the database most of the time.
 */
#ifndef INFONCHAT_WORKER_RETENTION_H
#define INFONCHAT_WORKER_RETENTION_H

#include <libpq-fe.h>

#define RETENTION_BATCH 1000
#define RETENTION_CYCLE_MS (5LL * 60 * 1000)
#define RETENTION_GAP_MS 100
#define RETENTION_MIN_DAYS 7
#define RETENTION_DEFAULT_DAYS 30

struct retention {
	long long days;           /* 0: off */
	const char *conninfo;
	PGconn *conn;             /* NULL until the first cycle, or after a failure */
	int busy;                 /* a batch is in flight */
	int phase;                /* 0 idle, 1 inbox batches, 2 outbox batches */
	long long next;           /* the next batch or cycle, not before (ms, monotonic) */
	long long inbox, outbox;  /* rows deleted in this cycle */
};

void retention_init(struct retention *r, const char *conninfo, long long days);

/* The socket to poll for input while a batch is in flight, else -1. */
int retention_fd(const struct retention *r);

/* When retention_step() next has something to do (ms, monotonic), or -1. */
long long retention_due(const struct retention *r);

/* Send the next batch if one is due at now and none is in flight. */
void retention_step(struct retention *r, long long now);

/* Take the result of the batch in flight once its socket is readable. */
void retention_handle(struct retention *r, long long now);

/* Close the connection; a batch in flight is cancelled (it rolls back). */
void retention_free(struct retention *r);

#endif
