/*
 * metrics.h: ingest-httpd's counters, rendered for GET /metrics in the
 * Prometheus text exposition format (version 0.0.4).
 */
#ifndef INGEST_METRICS_H
#define INGEST_METRICS_H

#include <stdint.h>

#include "buf.h"

/* Count a finished request by status code and, for errors, by error code. */
void metrics_request(int status, const char *error_code);
/* Observe a webhook's acknowledgement latency (first byte to reply). */
void metrics_ack_latency(uint64_t ns);
/* Render everything; in_flight and connections are sampled by the caller. */
void metrics_render(struct buf *out, long in_flight, long connections, int ready);

#endif
