#include "store.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crashpoint.h"
#include "db.h"
#include "log.h"
#include "uuid.h"

#define NCOLS STORE_NCOLS

static const char insert_sql[] =
    "with input as ("
    " select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],"
    "  $5::text[], $6::text[], $7::text[], $8::jsonb[], $9::json[],"
    "  $10::timestamptz[]) with ordinality as t(id, workspace_id, source_kind,"
    "  event_type, role, source_identifier, dedupe_key, headers, payload,"
    "  received_at, ord))"
    " insert into infonchat.event_inbox (id, workspace_id, source_kind,"
    "  event_type, role, source_identifier, dedupe_key, headers, payload,"
    "  received_at)"
    " select id, workspace_id, source_kind, event_type, role,"
    "  source_identifier, dedupe_key, headers, payload, received_at"
    " from input i"
    " where exists (select 1 from infonchat.workspaces w where w.id = i.workspace_id)"
    " order by workspace_id, source_kind, dedupe_key, id"
    " on conflict do nothing"
    " returning id";

static const char lookup_sql[] =
    "select t.ord,"
    " exists (select 1 from infonchat.workspaces w where w.id = t.workspace_id),"
    " coalesce((select e.id from infonchat.event_inbox e where e.id = t.id),"
    "  (select e.id from infonchat.event_inbox e where e.workspace_id = t.workspace_id"
    "   and e.source_kind = t.source_kind and e.dedupe_key = t.dedupe_key))"
    " from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[])"
    "  with ordinality as t(id, workspace_id, source_kind, dedupe_key, ord)";

int
store_prepare(PGconn *conn, void *arg)
{
	static const struct db_statement statements[] = {
		{ "inbox_insert", insert_sql, NCOLS },
		{ "inbox_lookup", lookup_sql, 4 },
	};

	(void)arg;
	return db_prepare_all(conn, statements, sizeof statements / sizeof statements[0]);
}

/*
 * Parameters go as one-dimensional arrays in PostgreSQL's binary array
 * format (array_recv): a header, then per element a 4-byte length and the
 * element's binary form. The text form ({"...","..."}) made the server scan
 * and unescape every payload byte in array_in, about a sixth of its time
 * per row; the binary form is a length and a copy.
 *
 *   header: ndim=1, has-nulls flag, element type oid, dim length, lbound=1
 */
#define OID_TEXT  25
#define OID_JSON  114
#define OID_UUID  2950
#define OID_JSONB 3802
#define BARR_HEAD 20    /* five int32 */

static void
put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t
get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
barr_begin(struct buf *b, uint32_t elem_oid)
{
	unsigned char h[BARR_HEAD];

	put_be32(h, 1);
	put_be32(h + 4, 0);
	put_be32(h + 8, elem_oid);
	put_be32(h + 12, 0);
	put_be32(h + 16, 1);
	buf_reset(b);
	buf_append(b, h, sizeof h);
}

/* Reserve room for one more element of n bytes; NULL when out of memory. */
static unsigned char *
barr_elem(struct buf *b, size_t n)
{
	unsigned char *p;

	if (b->failed || b->len < BARR_HEAD || n > INT32_MAX || buf_reserve(b, 4 + n) < 0)
		return NULL;
	p = (unsigned char *)b->p;
	put_be32(p + 12, get_be32(p + 12) + 1);
	put_be32(p + b->len, (uint32_t)n);
	b->len += 4;
	return p + b->len;
}

/* A text, json or jsonb element (jsonb: prefix its format version). NULL s: SQL NULL. */
static void
barr_text(struct buf *b, const char *s, size_t n, int jsonb)
{
	unsigned char *p;

	if (s == NULL) {
		if (barr_elem(b, 0) != NULL) {
			unsigned char *q = (unsigned char *)b->p;
			put_be32(q + 4, 1);                     /* has nulls */
			put_be32(q + b->len - 4, UINT32_MAX);   /* length -1 */
		}
		return;
	}
	if ((p = barr_elem(b, n + (jsonb ? 1 : 0))) == NULL)
		return;
	if (jsonb)
		*p++ = 1;
	memcpy(p, s, n);
	b->len += n + (jsonb ? 1 : 0);
}

static void
barr_str(struct buf *b, const char *s)
{
	barr_text(b, s, s ? strlen(s) : 0, 0);
}

/* A uuid element from its text (envelope_parse made it canonical). */
static void
barr_uuid(struct buf *b, const char *s)
{
	unsigned char *p = barr_elem(b, 16);

	if (p == NULL)
		return;
	if (uuid_bytes(s, p) < 0)
		b->failed = 1;    /* cannot happen for a parsed envelope; refuse the batch */
	b->len += 16;
}

/* The received_at column stays text (timestamptz's binary form is the server's clock arithmetic). */
static void
arr_add(struct buf *b, const char *s, size_t n)
{
	buf_putc(b, b->len == 0 ? '{' : ',');
	if (buf_reserve(b, 2 * n + 2) < 0)
		return;
	b->p[b->len++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			b->p[b->len++] = '\\';
		b->p[b->len++] = s[i];
	}
	b->p[b->len++] = '"';
	b->p[b->len] = '\0';
}

static void
arr_close(struct buf *b)
{
	if (b->len == 0)
		buf_putc(b, '{');
	buf_putc(b, '}');
}

static int
same_key(const struct envelope *a, const struct envelope *b)
{
	return a->dedupe_key != NULL && b->dedupe_key != NULL &&
	    strcmp(a->workspace_id, b->workspace_id) == 0 &&
	    strcmp(a->source_kind, b->source_kind) == 0 &&
	    strcmp(a->dedupe_key, b->dedupe_key) == 0;
}

/* Item indexes by dedupe key (workspace, source kind, key), ties in index order. */
static int
by_key(const void *a, const void *b, void *arg)
{
	const struct item *items = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	const struct envelope *p = &items[x].e, *q = &items[y].e;
	int c = strcmp(p->workspace_id, q->workspace_id);

	if (c == 0)
		c = strcmp(p->source_kind, q->source_kind);
	if (c == 0)
		c = strcmp(p->dedupe_key, q->dedupe_key);
	return c != 0 ? c : (x > y) - (x < y);
}

/*
 * The items of this round: pending, and not standing in for another. An
 * item stands in for the first pending item with the same dedupe key; the
 * keyed items are sorted by key (scratch: room for n indexes) so that each
 * finds it among its neighbours, in n log n compares for a batch of
 * thousands rather than n squared.
 */
static size_t
select_round(struct item *items, size_t n, size_t *idx, size_t *scratch)
{
	size_t m = 0, k = 0, head = 0;

	for (size_t i = 0; i < n; i++) {
		items[i].same_as = -1;
		if (items[i].result == ITEM_PENDING && items[i].e.dedupe_key != NULL)
			scratch[k++] = i;
	}
	qsort_r(scratch, k, sizeof *scratch, by_key, items);
	for (size_t j = 1; j < k; j++) {
		if (same_key(&items[scratch[j]].e, &items[scratch[head]].e))
			items[scratch[j]].same_as = (int)scratch[head];
		else
			head = j;
	}
	for (size_t i = 0; i < n; i++)
		if (items[i].result == ITEM_PENDING && items[i].same_as < 0)
			idx[m++] = i;
	return m;
}

/*
 * Send the insert for items idx[0..m) without waiting. Returns 0, 1 when
 * the parameters do not fit in memory, -1 for a lost connection.
 */
static int
insert_send(PGconn *conn, struct item *items, const size_t *idx, size_t m,
    struct buf *cols, char *err, size_t errlen)
{
	const char *values[NCOLS];

	static const uint32_t oids[NCOLS - 1] = {
		OID_UUID, OID_UUID, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_JSONB, OID_JSON
	};
	static const int formats[NCOLS] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 };
	int lengths[NCOLS];

	for (int c = 0; c < NCOLS - 1; c++)
		barr_begin(&cols[c], oids[c]);
	buf_reset(&cols[NCOLS - 1]);
	for (size_t k = 0; k < m; k++) {
		const struct envelope *e = &items[idx[k]].e;

		barr_uuid(&cols[0], e->id);
		barr_uuid(&cols[1], e->workspace_id);
		barr_str(&cols[2], e->source_kind);
		barr_str(&cols[3], e->event_type);
		barr_str(&cols[4], e->role);
		barr_str(&cols[5], e->source_identifier);
		barr_str(&cols[6], e->dedupe_key);
		barr_text(&cols[7], e->headers ? e->headers : "{}", e->headers ? e->headers_len : 2, 1);
		barr_text(&cols[8], e->payload, e->payload_len, 0);
		arr_add(&cols[9], e->received_at, strlen(e->received_at));
	}
	arr_close(&cols[NCOLS - 1]);
	for (int c = 0; c < NCOLS; c++) {
		if (cols[c].failed || cols[c].len > INT32_MAX) {
			snprintf(err, errlen, "batch too large for memory");
			return 1;
		}
		values[c] = cols[c].p;
		lengths[c] = (int)cols[c].len;
	}
	CRASH_POINT("writer.before-commit");
	if (!PQsendQueryPrepared(conn, "inbox_insert", NCOLS, values, lengths, formats, 0)) {
		log_warn("database connection lost", " err=%s", log_q(db_error(conn, NULL)));
		return -1;
	}
	return 0;
}

/* Item indexes by their item's id, ties in index (so round) order. */
static int
by_id(const void *a, const void *b, void *arg)
{
	const struct item *items = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(items[x].e.id, items[y].e.id);

	return c != 0 ? c : (x > y) - (x < y);
}

/*
 * Collect the result of insert_send(). Returns 0 (results set for inserted
 * ones), 1 for a data error (nothing stored), 2 for a serialization failure
 * or deadlock (try the same round again), -1 for a lost connection. byid is
 * scratch room for m indexes.
 */
static int
insert_result(PGconn *conn, struct item *items, const size_t *idx, size_t m,
    size_t *byid, char *err, size_t errlen)
{
	PGresult *r = PQgetResult(conn), *next;
	int rc = 0;

	/*
	 * The rows and CommandComplete are sent before the COMMIT at Sync: a
	 * backend killed while committing still flushes them (with its last
	 * WARNING), and a COMMIT can fail after them. So read the query to its
	 * end first; the first failure on the way is its result, and the rows
	 * count only when it reached ReadyForQuery on a connection still up.
	 */
	while ((next = PQgetResult(conn)) != NULL) {
		if (PQresultStatus(r) == PGRES_TUPLES_OK &&
		    PQresultStatus(next) != PGRES_TUPLES_OK &&
		    PQresultStatus(next) != PGRES_COMMAND_OK) {
			PQclear(r);
			r = next;
		} else
			PQclear(next);
	}
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQstatus(conn) != CONNECTION_OK) {
		if (db_connection_lost(conn, r)) {
			log_warn("database connection lost", " err=%s", log_q(db_error(conn, r)));
			rc = -1;
		} else if (strncmp(db_sqlstate(r), "40", 2) == 0) {
			log_info("batch rolled back, retrying", " err=%s", log_q(db_error(conn, r)));
			rc = 2;
		} else {
			snprintf(err, errlen, "%s (SQLSTATE %s)", db_error(conn, r), db_sqlstate(r));
			rc = 1;
		}
	} else if (PQntuples(r) > 0) {
		/*
		 * The inserted ids come back in insert order, not the round's:
		 * each is found by binary search in the round sorted by id, so
		 * a batch of thousands costs n log n compares, not n squared
		 * (which took milliseconds of a 512-row batch).
		 */
		memcpy(byid, idx, m * sizeof *byid);
		qsort_r(byid, m, sizeof *byid, by_id, items);
		for (int t = 0; t < PQntuples(r); t++) {
			const char *id = PQgetvalue(r, t, 0);
			size_t lo = 0, hi = m;

			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (strcmp(items[byid[mid]].e.id, id) < 0)
					lo = mid + 1;
				else
					hi = mid;
			}
			/* the first pending item with that id, in round order */
			for (; lo < m && strcmp(items[byid[lo]].e.id, id) == 0; lo++) {
				struct item *it = &items[byid[lo]];
				if (it->result == ITEM_PENDING) {
					it->result = ITEM_ACCEPTED;
					memcpy(it->event_id, it->e.id, sizeof it->event_id);
					break;
				}
			}
		}
	}
	PQclear(r);
	return rc;
}

static int
insert_round(struct store *st, PGconn *conn, struct item *items, const size_t *idx, size_t m)
{
	int rc = insert_send(conn, items, idx, m, st->cols, st->err, sizeof st->err);

	return rc != 0 ? rc : insert_result(conn, items, idx, m, st->sorted, st->err, sizeof st->err);
}

/* Settle the items of the round that were not inserted. */
static int
lookup_round(PGconn *conn, struct item *items, const size_t *idx, size_t m,
    struct buf *cols)
{
	const char *values[4];
	size_t *look = calloc(m > 0 ? m : 1, sizeof *look), nl = 0;
	PGresult *r;
	int rc = 0;

	if (look == NULL)
		return 1;

	static const uint32_t oids[4] = { OID_UUID, OID_UUID, OID_TEXT, OID_TEXT };
	static const int formats[4] = { 1, 1, 1, 1 };
	int lengths[4];

	for (int c = 0; c < 4; c++)
		barr_begin(&cols[c], oids[c]);
	for (size_t k = 0; k < m; k++) {
		struct item *it = &items[idx[k]];

		if (it->result != ITEM_PENDING)
			continue;
		look[nl++] = idx[k];
		barr_uuid(&cols[0], it->e.id);
		barr_uuid(&cols[1], it->e.workspace_id);
		barr_str(&cols[2], it->e.source_kind);
		barr_str(&cols[3], it->e.dedupe_key);
	}
	if (nl == 0) {
		free(look);
		return 0;
	}
	for (int c = 0; c < 4; c++) {
		if (cols[c].failed || cols[c].len > INT32_MAX) {
			free(look);
			return 1;
		}
		values[c] = cols[c].p;
		lengths[c] = (int)cols[c].len;
	}
	r = PQexecPrepared(conn, "inbox_lookup", 4, values, lengths, formats, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = db_connection_lost(conn, r) ? -1 : 1;
		log_warn("lookup failed", " err=%s", log_q(db_error(conn, r)));
		PQclear(r);
		free(look);
		return rc;
	}
	for (int t = 0; t < PQntuples(r); t++) {
		long ord = strtol(PQgetvalue(r, t, 0), NULL, 10);
		int ws = PQgetvalue(r, t, 1)[0] == 't';
		const char *found = PQgetisnull(r, t, 2) ? NULL : PQgetvalue(r, t, 2);
		struct item *it;

		if (ord < 1 || (size_t)ord > nl)
			continue;
		it = &items[look[ord - 1]];
		if (found != NULL) {
			it->result = strcmp(found, it->e.id) == 0 ? ITEM_ACCEPTED : ITEM_DUPLICATE;
			snprintf(it->event_id, sizeof it->event_id, "%s", found);
		} else if (!ws) {
			it->result = ITEM_UNKNOWN_WORKSPACE;
		}
		/* else: a concurrent insert of that key rolled back; next round */
	}
	PQclear(r);
	free(look);
	return 0;
}

/* Items that stood in for an earlier one with the same key get its answer. */
static void
settle_standins(struct item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];
		const struct item *first;

		if (it->same_as < 0 || it->result != ITEM_PENDING)
			continue;
		first = &items[it->same_as];
		if (first->result == ITEM_ACCEPTED || first->result == ITEM_DUPLICATE) {
			it->result = ITEM_DUPLICATE;
			memcpy(it->event_id, first->event_id, sizeof it->event_id);
		} else if (first->result != ITEM_PENDING) {
			it->result = first->result;
			memcpy(it->error, first->error, sizeof it->error);
		}
	}
}

void
store_init(struct store *st)
{
	memset(st, 0, sizeof *st);
	for (int c = 0; c < NCOLS; c++)
		buf_init(&st->cols[c], 0);
}

void
store_free(struct store *st)
{
	for (int c = 0; c < NCOLS; c++)
		buf_free(&st->cols[c]);
	free(st->idx);
	free(st->sorted);
	st->idx = st->sorted = NULL;
}

int
store_send(struct store *st, PGconn *conn, struct item *items, size_t n)
{
	if (n > st->cap) {
		size_t *idx = realloc(st->idx, n * sizeof *idx), *sorted;
		if (idx == NULL)
			return -1;
		st->idx = idx;
		if ((sorted = realloc(st->sorted, n * sizeof *sorted)) == NULL)
			return -1;
		st->sorted = sorted;
		st->cap = n;
	}
	st->sent = 0;
	st->m = select_round(items, n, st->idx, st->sorted);
	if (st->m == 0)
		return 1;
	if (insert_send(conn, items, st->idx, st->m, st->cols, st->err, sizeof st->err) != 0)
		return -1;
	st->sent = 1;
	return 0;
}

/*
 * Settle the round in st (its insert has been sent, or is sent again here),
 * then the rounds after it. Every round runs to completion before the next:
 * a serialization failure repeats the round, a data error splits it.
 */
enum store_status
store_complete(struct store *st, PGconn *conn, struct item *items, size_t n)
{
	enum store_status status = STORE_OK;

	for (int round = 0; round < 8; round++) {
		size_t m;
		int rc;

		if (round > 0 || !st->sent) {
			m = select_round(items, n, st->idx, st->sorted);
			if (m == 0)
				break;
			rc = insert_round(st, conn, items, st->idx, m);
		} else {
			m = st->m;
			rc = insert_result(conn, items, st->idx, m, st->sorted, st->err, sizeof st->err);
		}
		st->sent = 0;
		if (rc < 0) {
			status = STORE_RETRY;
			break;
		}
		if (rc == 2)
			continue;
		if (rc > 0 && m == 1) {
			struct item *it = &items[st->idx[0]];
			it->result = ITEM_INVALID;
			snprintf(it->error, sizeof it->error, "%s", st->err);
			settle_standins(items, n);
			continue;
		}
		if (rc > 0) {
			/* Find the bad one(s): every item of the round alone. */
			log_warn("batch refused, retrying one by one", " rows=%zu err=%s", m, log_q(st->err));
			for (size_t k = 0; k < m && status == STORE_OK; k++) {
				size_t one = st->idx[k];
				int r1 = insert_round(st, conn, items, &one, 1);
				if (r1 < 0)
					status = STORE_RETRY;
				else if (r1 == 1) {
					items[one].result = ITEM_INVALID;
					snprintf(items[one].error, sizeof items[one].error, "%s", st->err);
				} else if (r1 == 0 && lookup_round(conn, items, &one, 1, st->cols) < 0)
					status = STORE_RETRY;
			}
			if (status != STORE_OK)
				break;
			settle_standins(items, n);
			continue;
		}
		if (lookup_round(conn, items, st->idx, m, st->cols) < 0) {
			status = STORE_RETRY;
			break;
		}
		settle_standins(items, n);
	}
	if (status == STORE_OK) {
		for (size_t i = 0; i < n; i++) {
			if (items[i].result == ITEM_PENDING) {
				items[i].result = ITEM_UNSETTLED;
				snprintf(items[i].error, sizeof items[i].error,
				    "could not be settled (concurrent writers); retry");
			}
		}
	}
	return status;
}

enum store_status
store_batch(struct store *st, PGconn *conn, struct item *items, size_t n)
{
	int rc = store_send(st, conn, items, n);

	if (rc < 0)
		return STORE_RETRY;
	if (rc > 0)
		return STORE_OK;
	return store_complete(st, conn, items, n);
}
