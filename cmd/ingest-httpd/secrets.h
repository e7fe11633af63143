/*
 * secrets.h: ingest-httpd's in-memory copy of infonchat.webhook_secrets and
 * of the workspaces that require signatures, refreshed without ever blocking
 * the event loop.
 *
 * The whole table is loaded at start and again every SECRETS_REFRESH_MS (and
 * at once on secrets_refresh_now(), i.e. SIGHUP) over one read-only
 * connection driven by libpq's asynchronous API inside libevent:
 * PQconnectStartParams/PQconnectPoll, then PQsendQuery/PQconsumeInput/
 * PQgetResult on the connection's socket. A refresh that has not finished
 * within SECRETS_DEADLINE_MS is abandoned (connection closed). A load builds
 * a complete new snapshot and swaps it in; when the database is down or a
 * query fails, the last good snapshot stays in use and the failure is logged
 * (at most one warning per 30 s while it lasts).
 *
 * One blocking step remains: PQconnectStartParams resolves a host *name*
 * synchronously (libpq's documented limit); give an address, hostaddr=, or a
 * Unix socket directory to avoid it.
 *
 * Lookups are a hash probe keyed by "workspace_id/source": no allocation.
 */
#ifndef INGEST_SECRETS_H
#define INGEST_SECRETS_H

#include <stddef.h>

#include <event2/event.h>

#include "buf.h"
#include "signature.h"

#define SECRETS_REFRESH_MS  2000
#define SECRETS_DEADLINE_MS 4000

/* One usable key (valid = 0: the stored secret could not be decoded; such a
 * key never verifies, so a bad row fails closed). */
struct secret_key {
	enum sig_scheme scheme;
	int valid;
	const unsigned char *key;
	size_t key_len;
};

struct secrets;

/*
 * Start loading from conninfo (not copied: it must outlive the store). When
 * the first load succeeds, on_loaded(arg) runs once. Returns NULL on memory
 * failure.
 */
struct secrets *secrets_new(struct event_base *base, const char *conninfo,
    void (*on_loaded)(void *), void *arg);
void secrets_free(struct secrets *s);

/* True once a load has succeeded. */
int secrets_loaded(const struct secrets *s);

/* Refresh now (SIGHUP); a refresh already under way is left to finish. */
void secrets_refresh_now(struct secrets *s);

/*
 * The keys for (workspace_id, source): *keys and *n (0 when none), valid
 * until the next return to the event loop. Returns 1 when the workspace
 * requires signatures, else 0.
 */
int secrets_lookup(const struct secrets *s, const char *workspace_id,
    const char *source, const struct secret_key **keys, size_t *n);

/* Append the store's Prometheus lines to out. */
void secrets_metrics(const struct secrets *s, struct buf *out);

#endif
