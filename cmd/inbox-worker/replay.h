/*
 * replay.h: choose stored events to route again (inbox-worker --replay).
 *
 * The chosen rows are set back to pending (attempts 0, processed_at null,
 * next_attempt_at now()) in one statement that returns them; the worker
 * then routes them by id. A crash in between leaves them pending, so any
 * running worker's sweep finishes the job. Routing an event again queues a
 * run only for agents that have none for it, and never emits its role event
 * twice (sql/003_inbox_worker.sql).
 */
#ifndef WORKER_REPLAY_H
#define WORKER_REPLAY_H

#include <libpq-fe.h>

#include "envelope.h"
#include "uuid.h"

struct replay {
	int on;                               /* --replay */
	int any_filter;                       /* a filter option was given */
	char workspace_id[UUID_LEN + 1];      /* "" = any */
	const char *since, *until;            /* RFC 3339, or NULL */
	const char *role;                     /* exact, or prefix ending in '*'; NULL = any */
	char status[64];                      /* array literal, e.g. {processed,dead} */
};

void replay_init(struct replay *rp);

/*
 * Take one of the options --replay, --workspace, --since, --until, --role,
 * --status. Returns 1 when name is not one of them, 0 when taken, -1 for a
 * bad argument (reason in *err).
 */
int replay_option(struct replay *rp, const char *name, const char *arg,
    const char **err);

/*
 * Set the chosen rows pending and return them: a result of (id,
 * workspace_id) rows, oldest first, for the caller to PQclear(); or NULL
 * with the failed result in *failed (may be NULL too).
 */
PGresult *replay_mark(PGconn *conn, const struct replay *rp, PGresult **failed);

#endif
