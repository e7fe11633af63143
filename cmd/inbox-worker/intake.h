/*
 * intake.h: hints in. A hint is an inbox envelope line, from inbox-writer's
 * PUSH (one message each) or from stdin (one a line). Only its id and
 * workspace_id are kept, and only as a hint: the database decides whether
 * the event is still pending, so a stale, repeated or lost hint does no harm.
 */
#ifndef WORKER_INTAKE_H
#define WORKER_INTAKE_H

#include <stddef.h>

#include "buf.h"
#include "route.h"

/* Hints waiting for a lane, oldest first. */
struct hintq {
	struct hint *v;
	size_t n, cap;
};

/* Allocate room for cap hints. Returns 0 or -1. */
int hintq_init(struct hintq *q, size_t cap);
void hintq_free(struct hintq *q);

/* Move up to max hints from the head of q into l->req. Returns how many. */
size_t hintq_take(struct hintq *q, struct lane *l, size_t max);

/*
 * Parse one envelope line into h (lineno 0). arena is scratch space for the
 * parser. Returns 0, or -1 with a static reason in *why.
 */
int hint_parse(const char *line, size_t n, struct hint *h, struct buf *arena,
    const char **why);

/*
 * Receive what the socket holds now (never waits) into q while q has room.
 * Bad messages are logged and counted in *bad. Returns the number queued,
 * or -1 when the socket failed (errno).
 */
long intake_recv(void *sock, struct hintq *q, struct buf *arena, size_t max_line,
    unsigned long long *bad);

#endif
