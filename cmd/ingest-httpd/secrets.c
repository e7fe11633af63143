#include "secrets.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "clock.h"
#include "log.h"
#include "uuid.h"
#include "webhook.h"

/*
 * One transaction, read only, bounded: the secrets (grouped by workspace and
 * source, oldest first) and the workspaces that require signatures.
 */
static const char LOAD_SQL[] =
	"begin read only;"
	"set local statement_timeout = 3000;"
	"select workspace_id::text, source, scheme, secret from infonchat.webhook_secrets"
	" order by workspace_id, source, created_at;"
	"select id::text from infonchat.workspaces where require_signature;"
	"commit";

#define KEY_MAX (UUID_LEN + 1 + SOURCE_MAX + 1)
#define WARN_EVERY_MS 30000

/* A hash slot: "workspace_id/source" -> keys[first .. first+n); for the
 * require_signature mark the source part is empty. */
struct slot {
	char key[KEY_MAX];
	uint32_t first, n;
};

struct snapshot {
	struct slot *slots;
	size_t nslots;          /* a power of two; 0 when empty */
	struct secret_key *keys;
	size_t nkeys;
	struct buf arena;       /* the key bytes */
	size_t nrequire;
	size_t ninvalid;
};

enum conn_state { C_NONE, C_CONNECTING, C_IDLE, C_QUERY };

struct secrets {
	struct event_base *base;
	const char *conninfo;
	void (*on_loaded)(void *);
	void *arg;

	PGconn *conn;
	enum conn_state state;
	struct event *io;
	struct event *tick;
	long long next_ms;      /* next refresh due */
	long long deadline_ms;  /* of the refresh under way */
	PGresult *res[2];       /* the two row sets of the refresh under way */
	int nres;
	int failed;             /* the refresh under way hit an error */
	int again;              /* SIGHUP during a refresh: another one after it */
	int verbose;            /* log each unusable row on the next build */

	struct snapshot *cur;
	long long loaded_ms;    /* clock_ms() of the last good load; 0: never */
	unsigned long long loads, failures;
	long long last_warn_ms;
	int failing;
};

/* --- snapshot ------------------------------------------------------------ */

static uint64_t
hash_key(const char *k)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *k; k++) {
		h ^= (unsigned char)*k;
		h *= 1099511628211ULL;
	}
	return h;
}

static void
snapshot_free(struct snapshot *sn)
{
	if (sn == NULL)
		return;
	free(sn->slots);
	free(sn->keys);
	buf_free(&sn->arena);
	free(sn);
}

/* Insert (or find) key; returns the slot. The table never fills (sized at
 * twice the most keys it can get). */
static struct slot *
snapshot_slot(struct snapshot *sn, const char *key)
{
	size_t mask = sn->nslots - 1, i = (size_t)hash_key(key) & mask;

	while (sn->slots[i].key[0] != '\0' && strcmp(sn->slots[i].key, key) != 0)
		i = (i + 1) & mask;
	if (sn->slots[i].key[0] == '\0')
		memcpy(sn->slots[i].key, key, strlen(key) + 1);
	return &sn->slots[i];
}

static const struct slot *
snapshot_find(const struct snapshot *sn, const char *key)
{
	size_t mask, i;

	if (sn == NULL || sn->nslots == 0)
		return NULL;
	mask = sn->nslots - 1;
	i = (size_t)hash_key(key) & mask;
	while (sn->slots[i].key[0] != '\0') {
		if (strcmp(sn->slots[i].key, key) == 0)
			return &sn->slots[i];
		i = (i + 1) & mask;
	}
	return NULL;
}

static int
make_key(char out[KEY_MAX], const char *ws, const char *source)
{
	size_t a = strlen(ws), b = strlen(source);

	if (a + 1 + b + 1 > KEY_MAX)
		return -1;
	memcpy(out, ws, a);
	out[a] = '/';
	memcpy(out + a + 1, source, b + 1);
	return 0;
}

/* Build a snapshot from the two row sets; NULL on memory failure. Rows that
 * cannot be keyed are logged and skipped; undecodable secrets stay as keys
 * that never verify. */
static struct snapshot *
snapshot_build(const PGresult *sec, const PGresult *req, int verbose)
{
	struct snapshot *sn = calloc(1, sizeof *sn);
	int nsec = PQntuples(sec), nreq = PQntuples(req);
	size_t want = (size_t)nsec + (size_t)nreq, *offs = NULL;
	char key[KEY_MAX];

	if (sn == NULL)
		return NULL;
	buf_init(&sn->arena, 0);
	sn->nslots = 16;
	while (sn->nslots < 2 * want + 1)
		sn->nslots *= 2;
	sn->slots = calloc(sn->nslots, sizeof *sn->slots);
	sn->keys = calloc(nsec > 0 ? (size_t)nsec : 1, sizeof *sn->keys);
	offs = calloc(nsec > 0 ? (size_t)nsec : 1, sizeof *offs);
	if (sn->slots == NULL || sn->keys == NULL || offs == NULL)
		goto fail;
	/* Rows come ordered by (workspace_id, source): each group is one run. */
	for (int i = 0; i < nsec; i++) {
		const char *ws = PQgetvalue(sec, i, 0), *src = PQgetvalue(sec, i, 1);
		const char *scheme = PQgetvalue(sec, i, 2), *secret = PQgetvalue(sec, i, 3);
		struct secret_key *k = &sn->keys[sn->nkeys];
		struct slot *sl;

		if (make_key(key, ws, src) < 0) {
			if (verbose)
				log_warn("secret skipped: bad workspace or source", " workspace_id=%s source=%s",
			    log_q(ws), log_q(src));
			continue;
		}
		memset(k, 0, sizeof *k);
		if (sig_scheme_parse(scheme, &k->scheme) < 0) {
			/* The table's CHECK makes this unreachable; fail closed anyway. */
			k->scheme = SIG_HMAC_SHA256;
		} else {
			size_t before = sn->arena.len;

			if (sig_key_prepare(k->scheme, secret, (size_t)PQgetlength(sec, i, 3),
			    &sn->arena) == 0) {
				k->valid = 1;
				offs[sn->nkeys] = before;
				k->key_len = sn->arena.len - before;
			} else if (sn->arena.failed) {
				goto fail;
			}
		}
		if (!k->valid) {
			sn->ninvalid++;
			if (verbose)
				log_warn("secret unusable: it matches no signature",
				    " workspace_id=%s source=%s scheme=%s", ws, src, log_q(scheme));
		}
		sl = snapshot_slot(sn, key);
		if (sl->n == 0)
			sl->first = (uint32_t)sn->nkeys;
		sl->n++;
		sn->nkeys++;
	}
	for (size_t i = 0; i < sn->nkeys; i++)
		if (sn->keys[i].valid)
			sn->keys[i].key = (const unsigned char *)sn->arena.p + offs[i];
	for (int i = 0; i < nreq; i++) {
		if (make_key(key, PQgetvalue(req, i, 0), "") < 0)
			continue;
		(void)snapshot_slot(sn, key);
		sn->nrequire++;
	}
	free(offs);
	return sn;
fail:
	free(offs);
	snapshot_free(sn);
	return NULL;
}

int
secrets_lookup(const struct secrets *s, const char *ws, const char *source,
    const struct secret_key **keys, size_t *n)
{
	char key[KEY_MAX];
	const struct slot *sl;

	*keys = NULL;
	*n = 0;
	if (s == NULL || s->cur == NULL || make_key(key, ws, source) < 0)
		return 0;
	sl = snapshot_find(s->cur, key);
	if (sl != NULL) {
		*keys = &s->cur->keys[sl->first];
		*n = sl->n;
	}
	if (s->cur->nrequire == 0 || make_key(key, ws, "") < 0)
		return 0;
	return snapshot_find(s->cur, key) != NULL;
}

/* --- the connection ------------------------------------------------------ */

static void on_io(evutil_socket_t fd, short what, void *arg);

static void
clear_results(struct secrets *s)
{
	for (int i = 0; i < s->nres; i++)
		PQclear(s->res[i]);
	s->nres = 0;
	s->failed = 0;
}

static void
drop_conn(struct secrets *s)
{
	if (s->io != NULL) {
		event_free(s->io);
		s->io = NULL;
	}
	if (s->conn != NULL) {
		PQfinish(s->conn);
		s->conn = NULL;
	}
	clear_results(s);
	s->state = C_NONE;
}

/* The refresh failed: keep the last good snapshot, log (throttled), retry. */
static void
refresh_failed(struct secrets *s, const char *what, const char *err)
{
	long long now = clock_ms();
	char line[256];
	size_t n = strcspn(err, "\n");

	/* libpq's messages run over several lines: the first one says it. */
	if (n >= sizeof line)
		n = sizeof line - 1;
	memcpy(line, err, n);
	line[n] = '\0';
	s->failures++;
	if (!s->failing || now - s->last_warn_ms >= WARN_EVERY_MS) {
		log_warn("secrets refresh failed: keeping the last good copy",
		    " what=%s err=%s loaded=%d age_ms=%lld", what, log_q(line),
		    s->cur != NULL, s->loaded_ms ? now - s->loaded_ms : -1LL);
		s->last_warn_ms = now;
	}
	s->failing = 1;
	drop_conn(s);
	s->next_ms = now + SECRETS_REFRESH_MS / 2;
}

static int
watch(struct secrets *s, short what)
{
	int fd = PQsocket(s->conn);

	if (fd < 0)
		return -1;
	if (s->io != NULL)
		event_free(s->io);
	s->io = event_new(s->base, fd, what, on_io, s);
	if (s->io == NULL || event_add(s->io, NULL) < 0)
		return -1;
	return 0;
}

static void
send_query(struct secrets *s)
{
	int f;

	clear_results(s);
	if (PQsendQuery(s->conn, LOAD_SQL) != 1) {
		refresh_failed(s, "send", PQerrorMessage(s->conn));
		return;
	}
	s->state = C_QUERY;
	s->deadline_ms = clock_ms() + SECRETS_DEADLINE_MS;
	f = PQflush(s->conn);
	if (f < 0 || watch(s, f == 1 ? EV_READ | EV_WRITE : EV_READ) < 0)
		refresh_failed(s, "send", PQerrorMessage(s->conn));
}

static void
query_done(struct secrets *s)
{
	struct snapshot *sn;
	int first = s->cur == NULL;

	if (s->failed || s->nres != 2) {
		refresh_failed(s, "query", s->failed ? PQerrorMessage(s->conn) : "unexpected results");
		return;
	}
	/* Unusable rows are named at the first load, on SIGHUP and every ~5 min. */
	sn = snapshot_build(s->res[0], s->res[1], first || s->verbose || s->loads % 150 == 0);
	s->verbose = 0;
	clear_results(s);
	if (sn == NULL) {
		refresh_failed(s, "build", "out of memory");
		return;
	}
	if (s->failing || first || sn->nkeys != s->cur->nkeys ||
	    sn->nrequire != s->cur->nrequire || sn->ninvalid != s->cur->ninvalid)
		log_info("secrets loaded", " secrets=%zu unusable=%zu require_signature=%zu",
		    sn->nkeys, sn->ninvalid, sn->nrequire);
	snapshot_free(s->cur);
	s->cur = sn;
	s->failing = 0;
	s->loads++;
	s->loaded_ms = clock_ms();
	s->state = C_IDLE;
	s->next_ms = s->again ? s->loaded_ms : s->loaded_ms + SECRETS_REFRESH_MS;
	s->again = 0;
	if (s->io != NULL) {
		event_free(s->io);
		s->io = NULL;
	}
	if (first && s->on_loaded != NULL)
		s->on_loaded(s->arg);
}

static void
on_query_io(struct secrets *s, short what)
{
	int f = 0;

	if (what & EV_WRITE) {
		f = PQflush(s->conn);

		if (f < 0) {
			refresh_failed(s, "send", PQerrorMessage(s->conn));
			return;
		}
		if (f == 1 && !(what & EV_READ)) {
			if (watch(s, EV_READ | EV_WRITE) < 0)
				refresh_failed(s, "send", "event");
			return;
		}
	}
	if (PQconsumeInput(s->conn) != 1) {
		refresh_failed(s, "receive", PQerrorMessage(s->conn));
		return;
	}
	while (!PQisBusy(s->conn)) {
		PGresult *r = PQgetResult(s->conn);

		if (r == NULL) {
			query_done(s);
			return;
		}
		switch (PQresultStatus(r)) {
		case PGRES_COMMAND_OK:
			PQclear(r);
			break;
		case PGRES_TUPLES_OK:
			if (s->nres < 2 && PQnfields(r) >= 1 &&
			    (s->nres == 1 || PQnfields(r) == 4)) {
				s->res[s->nres++] = r;
			} else {
				PQclear(r);
				s->failed = 1;
			}
			break;
		default:
			if (!s->failed)
				log_debug("secrets query error", " err=%s",
				    log_q(PQresultErrorMessage(r)));
			PQclear(r);
			s->failed = 1;
			break;
		}
	}
	if (watch(s, f == 1 ? EV_READ | EV_WRITE : EV_READ) < 0)
		refresh_failed(s, "receive", "event");
}

static void
on_connect_io(struct secrets *s)
{
	switch (PQconnectPoll(s->conn)) {
	case PGRES_POLLING_READING:
		if (watch(s, EV_READ) < 0)
			refresh_failed(s, "connect", "event");
		return;
	case PGRES_POLLING_WRITING:
		if (watch(s, EV_WRITE) < 0)
			refresh_failed(s, "connect", "event");
		return;
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(s->conn, 1) != 0) {
			refresh_failed(s, "connect", PQerrorMessage(s->conn));
			return;
		}
		s->state = C_IDLE;
		send_query(s);
		return;
	default:
		refresh_failed(s, "connect", PQerrorMessage(s->conn));
		return;
	}
}

static void
on_io(evutil_socket_t fd, short what, void *arg)
{
	struct secrets *s = arg;

	(void)fd;
	if (s->state == C_CONNECTING)
		on_connect_io(s);
	else if (s->state == C_QUERY)
		on_query_io(s, what);
}

static void
start_connect(struct secrets *s)
{
	const char *keys[] = { "dbname", "application_name", NULL };
	const char *vals[] = { s->conninfo, "ingest-httpd", NULL };

	s->conn = PQconnectStartParams(keys, vals, 1);
	if (s->conn == NULL) {
		refresh_failed(s, "connect", "out of memory");
		return;
	}
	if (PQstatus(s->conn) == CONNECTION_BAD) {
		refresh_failed(s, "connect", PQerrorMessage(s->conn));
		return;
	}
	s->state = C_CONNECTING;
	s->deadline_ms = clock_ms() + SECRETS_DEADLINE_MS;
	/* As if PQconnectPoll had returned PGRES_POLLING_WRITING. */
	if (watch(s, EV_WRITE) < 0)
		refresh_failed(s, "connect", "event");
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct secrets *s = arg;
	long long now = clock_ms();

	(void)fd;
	(void)what;
	switch (s->state) {
	case C_CONNECTING:
	case C_QUERY:
		if (now >= s->deadline_ms)
			refresh_failed(s, s->state == C_QUERY ? "query" : "connect", "timed out");
		break;
	case C_NONE:
		if (now >= s->next_ms)
			start_connect(s);
		break;
	case C_IDLE:
		if (now >= s->next_ms) {
			if (PQstatus(s->conn) != CONNECTION_OK)
				refresh_failed(s, "connection", "lost");
			else
				send_query(s);
		}
		break;
	}
}

/* --- public -------------------------------------------------------------- */

struct secrets *
secrets_new(struct event_base *base, const char *conninfo,
    void (*on_loaded)(void *), void *arg)
{
	struct secrets *s = calloc(1, sizeof *s);
	struct timeval tv = { 0, 100000 };

	if (s == NULL)
		return NULL;
	s->base = base;
	s->conninfo = conninfo ? conninfo : "";
	s->on_loaded = on_loaded;
	s->arg = arg;
	s->tick = event_new(base, -1, EV_PERSIST, on_tick, s);
	if (s->tick == NULL || event_add(s->tick, &tv) < 0) {
		secrets_free(s);
		return NULL;
	}
	start_connect(s);
	return s;
}

void
secrets_free(struct secrets *s)
{
	if (s == NULL)
		return;
	drop_conn(s);
	if (s->tick != NULL)
		event_free(s->tick);
	snapshot_free(s->cur);
	free(s);
}

int
secrets_loaded(const struct secrets *s)
{
	return s != NULL && s->cur != NULL;
}

void
secrets_refresh_now(struct secrets *s)
{
	if (s == NULL)
		return;
	s->next_ms = clock_ms();
	s->verbose = 1;
	if (s->state == C_CONNECTING || s->state == C_QUERY)
		s->again = 1;
	if (s->state == C_NONE)
		start_connect(s);
	else if (s->state == C_IDLE)
		on_tick(-1, 0, s);
}

void
secrets_metrics(const struct secrets *s, struct buf *out)
{
	if (s == NULL)
		return;
	buf_printf(out, "# HELP infonchat_secrets_loaded Webhook secrets in memory.\n"
	    "# TYPE infonchat_secrets_loaded gauge\ninfonchat_secrets_loaded %zu\n",
	    s->cur ? s->cur->nkeys : 0);
	buf_printf(out, "# HELP infonchat_secrets_age_seconds Time since the last good load of the secrets (-1: never).\n"
	    "# TYPE infonchat_secrets_age_seconds gauge\ninfonchat_secrets_age_seconds %.3f\n",
	    s->loaded_ms ? (double)(clock_ms() - s->loaded_ms) / 1e3 : -1.0);
	buf_printf(out, "# HELP infonchat_secrets_refresh_failures_total Failed refreshes of the secrets.\n"
	    "# TYPE infonchat_secrets_refresh_failures_total counter\n"
	    "infonchat_secrets_refresh_failures_total %llu\n", s->failures);
}
