/*
 * ingest.h: the webhook endpoint and the health endpoints of ingest-httpd.
 * It turns a checked request into an inbox envelope and answers 202 only
 * once inbox-writer confirmed the COMMIT (or, with --out -, once the line
 * is written to stdout, which is not durable).
 */
#ifndef INGEST_INGEST_H
#define INGEST_INGEST_H

#include <stddef.h>

#include "ack.h"
#include "buf.h"
#include "http.h"
#include "ratelimit.h"
#include "secrets.h"
#include "webhook.h"

struct ingest {
	size_t max_body;
	struct ack *ack;        /* NULL in stdout mode */
	int out_fd;             /* stdout mode: where envelopes go; else -1 */
	struct http_server *http;
	struct secrets *secrets;  /* NULL without --db: nothing is verified */
	struct ratelimit *rl;     /* NULL without --rate-limit */
	/* scratch space reused by every request */
	struct buf query_arena;
	struct buf line;
	struct buf headers;
	struct buf role;
	struct fields fields;
};

void ingest_init(struct ingest *g, size_t max_body);
void ingest_free(struct ingest *g);
void ingest_on_head(struct http_request *req, void *arg);
void ingest_on_request(struct http_request *req, void *arg);
/* http_server_after_read() hook: pass queued envelopes on early. */
void ingest_after_read(void *arg);
void ingest_on_ack(void *ctx, enum ack_status st, const char *event_id,
    const char *message, void *arg);

#endif
