/*
 * emit.h: hints out. After a batch commits, its outbox envelopes go to
 * outbox-relay over a PUSH socket (ZMQ_IMMEDIATE, never waiting: at the
 * high-water mark or with no relay connected an envelope is dropped and
 * counted, since the relay sweeps the table anyway) or, with --out -, to
 * stdout, one a line, written whole before the next batch is taken.
 */
#ifndef WORKER_EMIT_H
#define WORKER_EMIT_H

#include <stddef.h>

#include "buf.h"
#include "lineout.h"

struct emitter {
	void *sock;               /* PUSH, or NULL */
	struct lineout out;       /* stdout when use_fd */
	int use_fd;
	unsigned long long sent, dropped;
};

/* Pass on lines, n envelopes each ending in "\n" (route.h's outcome.envs). */
void emit_lines(struct emitter *em, const struct buf *lines, size_t n);

#endif
