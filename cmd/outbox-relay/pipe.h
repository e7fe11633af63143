/*
 * pipe.h: the relay as a debug pipe (--in -): outbox envelope lines from
 * stdin go to the sink, each checked to be a JSON object with a "topic"
 * string, which becomes the first frame on a PUB. No database.
 */
#ifndef RELAY_PIPE_H
#define RELAY_PIPE_H

#include <stddef.h>

#include "buf.h"
#include "sink.h"

/* Outbox envelopes nest the inbox envelope, whose payload nests up to
 * PAYLOAD_MAX_DEPTH levels. */
#define OUTBOX_MAX_DEPTH (PAYLOAD_MAX_DEPTH + 2)

/*
 * The topic of an outbox envelope line, decoded into topic (reset first).
 * Returns 0, or -1 with a static reason in *why.
 */
int outbox_line_topic(const char *line, size_t n, struct buf *topic,
    const char **why);

/*
 * Copy stdin to the sink until end of file or stage_stop. Returns a
 * sysexits status: 0, 65 when some lines were bad (each logged with its
 * number and skipped), 74 when stdin could not be read.
 */
int pipe_run(struct sink *s, size_t max_line);

#endif
