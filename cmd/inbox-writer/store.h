/*
 * store.h: group commit of inbox envelopes into infonchat.event_inbox.
 *
 * One call stores a whole batch with one INSERT ... ON CONFLICT DO NOTHING
 * (one transaction, one fsync), then looks up the rows it did not insert:
 * an existing row with the item's own id means an earlier try committed it
 * (accepted); one with the same (workspace_id, source_kind, dedupe_key) is
 * the original of a duplicate; neither with no such workspace is
 * unknown_workspace. Items of one batch that share a dedupe key are settled
 * here before the database sees them: the first one stands for the rest.
 * A batch that fails for its data is retried item by item, so one bad
 * envelope fails alone.
 */
#ifndef WRITER_STORE_H
#define WRITER_STORE_H

#include <stddef.h>

#include <libpq-fe.h>

#include "buf.h"
#include "envelope.h"

enum item_result {
	ITEM_PENDING,
	ITEM_ACCEPTED,
	ITEM_DUPLICATE,
	ITEM_UNKNOWN_WORKSPACE,
	ITEM_INVALID,         /* the database refused it; error holds why */
	ITEM_UNSETTLED        /* neither stored nor found after retries: try later */
};

struct item {
	struct buf line;      /* the envelope as received (owned) */
	struct buf arena;     /* decoded fields of e */
	struct envelope e;
	enum item_result result;
	char event_id[UUID_LEN + 1];
	char error[200];
	int same_as;          /* index of an earlier item with the same dedupe key, or -1 */
	/* where the answer goes: a ROUTER peer, or a line of stdin */
	struct buf peer;      /* identity frame + token frame, length-prefixed */
	long lineno;
};

enum store_status { STORE_OK, STORE_RETRY };

#define STORE_NCOLS 10

/* Scratch space of one connection's batch in flight. */
struct store {
	struct buf cols[STORE_NCOLS];  /* array literals, one per column */
	size_t *idx;                   /* items of the round, by index */
	size_t *sorted;                /* scratch: items sorted by id or by key */
	size_t cap;
	size_t m;                      /* items in the round sent */
	int sent;                      /* a round's insert awaits its result */
	char err[200];
};

void store_init(struct store *st);
void store_free(struct store *st);

/* Prepare the statements on a fresh connection (db_connect_retry setup hook). */
int store_prepare(PGconn *conn, void *arg);

/*
 * Store items[0..n) and set each one's result. STORE_RETRY: the connection
 * broke; nothing may be acknowledged, reconnect and call again with the same
 * items (results already set are kept and stay correct).
 *
 * Inserts are sorted by dedupe key so that concurrent batches take their
 * locks in one order and never deadlock each other.
 */
enum store_status store_batch(struct store *st, PGconn *conn,
    struct item *items, size_t n);

/*
 * The same in two steps, so that several connections can each have a batch
 * in flight: store_send() sends the first insert and returns at once (0; 1
 * when nothing needs storing; -1 connection lost); once the connection's
 * socket is readable and PQisBusy() is false, store_complete() collects it
 * and finishes the batch, blocking for the rare follow-up queries.
 */
int store_send(struct store *st, PGconn *conn, struct item *items, size_t n);
enum store_status store_complete(struct store *st, PGconn *conn,
    struct item *items, size_t n);

#endif
