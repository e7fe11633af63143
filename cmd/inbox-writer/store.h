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
	ITEM_INVALID          /* the database refused it; error holds why */
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

/* Prepare the statements on a fresh connection (db_connect_retry setup hook). */
int store_prepare(PGconn *conn, void *arg);

/*
 * Store items[0..n) and set each one's result. STORE_RETRY: the connection
 * broke; nothing may be acknowledged, reconnect and call again with the same
 * items (results already set are kept and stay correct).
 */
enum store_status store_batch(PGconn *conn, struct item *items, size_t n);

#endif
