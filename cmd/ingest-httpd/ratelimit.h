/*
 * ratelimit.h: a token bucket per workspace (--rate-limit, --rate-burst).
 *
 * Each workspace's bucket holds at most burst tokens and gains rate tokens a
 * second; a request takes one or is refused. Buckets live in an open-
 * addressing table keyed by the workspace id: no allocation per request
 * except when the table grows. A full bucket is the same as no bucket, so
 * when the table fills, full buckets are dropped before it grows; past
 * RATELIMIT_MAX_BUCKETS workspaces at once, new ones are let through
 * (counted in /metrics) rather than refused.
 */
#ifndef INGEST_RATELIMIT_H
#define INGEST_RATELIMIT_H

#include <stdint.h>

#include "buf.h"

#define RATELIMIT_MAX_BUCKETS (1u << 18)

struct ratelimit;

/* rate > 0 tokens a second, burst >= 1. NULL on memory failure. */
struct ratelimit *ratelimit_new(double rate, double burst);
void ratelimit_free(struct ratelimit *rl);

/*
 * Take a token for workspace_id (canonical UUID) at monotonic time now_ns.
 * Returns 0 when allowed, else the whole seconds (>= 1) after which the next
 * token will be there, for Retry-After.
 */
long ratelimit_take(struct ratelimit *rl, const char *workspace_id, uint64_t now_ns);

/* Append the limiter's Prometheus lines to out. */
void ratelimit_metrics(const struct ratelimit *rl, struct buf *out);

#endif
