/*
 * outbox.h: the relay's queries on infonchat.event_outbox.
 *
 * Publishing one batch is one transaction on one connection:
 *
 *   outbox_claim()   begin; lock up to N unpublished rows, lowest seq
 *                    first, skipping rows another relay has locked
 *                    (FOR UPDATE SKIP LOCKED), with each row's envelope as
 *                    infonchat.outbox_envelope() makes it
 *   ...              the caller sends every envelope
 *   outbox_mark()    set published_at on exactly those rows; commit
 *
 * A crash or a lost connection anywhere before the commit leaves the rows
 * unpublished (their locks go with the session), so they are sent again:
 * at-least-once. Rows are found by state (published_at is null), never by a
 * seq cursor, so a row whose seq committed late is not skipped.
 *
 * Replay (outbox_replay_*) reads every row with seq in [from, to] whose
 * topic and kind start with one of the given prefixes, published or not, in
 * seq order, through a cursor in one read-only repeatable-read transaction
 * (one snapshot, memory bounded by the fetch size).
 */
#ifndef RELAY_OUTBOX_H
#define RELAY_OUTBOX_H

#include <stddef.h>

#include <libpq-fe.h>

#include "buf.h"

enum outbox_status { OUTBOX_OK, OUTBOX_LOST, OUTBOX_FAILED };

/* One claimed batch; the strings point into its PGresult. */
struct outbox {
	PGresult *res;         /* rows of the claim or of the last fetch (owned) */
	int n;                 /* rows in res */
	struct buf ids, workspaces;   /* array literals for the mark */
	char err[256];         /* why the last call failed */
};

/* Column accessors of row i of the current batch or fetch. */
const char *outbox_id(const struct outbox *o, int i);
const char *outbox_event_id(const struct outbox *o, int i);
const char *outbox_seq(const struct outbox *o, int i);
const char *outbox_topic(const struct outbox *o, int i, size_t *len);
const char *outbox_envelope(const struct outbox *o, int i, size_t *len);

void outbox_init(struct outbox *o);
void outbox_free(struct outbox *o);

/*
 * Setup hook for db_connect_retry(): logs the server's notices as logfmt
 * lines, prepares the statements and turns synchronous_commit off for this
 * session (a mark lost in a database crash only means the row is published
 * again).
 */
int outbox_prepare(PGconn *conn, void *arg);

/* Setup hook for the replay's connection: notices as logfmt lines. */
int outbox_replay_prepare(PGconn *conn, void *arg);

/*
 * Begin and claim up to max rows. OUTBOX_OK with o->n rows (maybe 0), the
 * transaction open: finish it with outbox_mark() (also for 0 rows) or
 * outbox_abort(). OUTBOX_LOST: the connection is gone. OUTBOX_FAILED: the
 * query failed (o->err), the transaction is rolled back.
 */
enum outbox_status outbox_claim(struct outbox *o, PGconn *conn, int max);

/* Mark the claimed rows published and commit. */
enum outbox_status outbox_mark(struct outbox *o, PGconn *conn);

/* Roll back the open transaction (the rows stay unpublished). */
void outbox_abort(struct outbox *o, PGconn *conn);

/*
 * Replay: open the cursor (topics and kinds are JSON arrays of prefixes, or
 * NULL for all), then fetch batches of up to max rows until o->n is 0, then
 * close. After OUTBOX_LOST the caller reconnects and opens again from the
 * seq after the last row it handled.
 */
enum outbox_status outbox_replay_open(struct outbox *o, PGconn *conn,
    long long from, long long to, const char *topics, const char *kinds);
enum outbox_status outbox_replay_fetch(struct outbox *o, PGconn *conn, int max);
void outbox_replay_close(struct outbox *o, PGconn *conn);

#endif
