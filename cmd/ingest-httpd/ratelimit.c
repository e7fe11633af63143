#include "ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "uuid.h"

struct bucket {
	char ws[UUID_LEN + 1];      /* "" when the slot is free */
	double tokens;
	uint64_t t_ns;              /* when tokens was computed */
};

struct ratelimit {
	double rate, burst;
	struct bucket *slots;
	size_t nslots, used;        /* nslots is a power of two */
	unsigned long long limited, untracked;
};

static size_t
slot_of(const char *ws, size_t mask)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *ws; ws++) {
		h ^= (unsigned char)*ws;
		h *= 1099511628211ULL;
	}
	return (size_t)h & mask;
}

static void
refill(const struct ratelimit *rl, struct bucket *b, uint64_t now_ns)
{
	if (now_ns > b->t_ns) {
		b->tokens += (double)(now_ns - b->t_ns) / 1e9 * rl->rate;
		if (b->tokens > rl->burst)
			b->tokens = rl->burst;
	}
	b->t_ns = now_ns;
}

/* Rebuild into nslots slots, dropping the buckets that are full by now. */
static int
rebuild(struct ratelimit *rl, size_t nslots, uint64_t now_ns)
{
	struct bucket *old = rl->slots, *nw = calloc(nslots, sizeof *nw);
	size_t oldn = rl->nslots;

	if (nw == NULL)
		return -1;
	rl->slots = nw;
	rl->nslots = nslots;
	rl->used = 0;
	for (size_t i = 0; i < oldn; i++) {
		struct bucket *b = &old[i];
		size_t j;

		if (b->ws[0] == '\0')
			continue;
		refill(rl, b, now_ns);
		if (b->tokens >= rl->burst)
			continue;
		j = slot_of(b->ws, nslots - 1);
		while (nw[j].ws[0] != '\0')
			j = (j + 1) & (nslots - 1);
		nw[j] = *b;
		rl->used++;
	}
	free(old);
	return 0;
}

struct ratelimit *
ratelimit_new(double rate, double burst)
{
	struct ratelimit *rl = calloc(1, sizeof *rl);

	if (rl == NULL)
		return NULL;
	rl->rate = rate;
	rl->burst = burst < 1 ? 1 : burst;
	rl->nslots = 1024;
	rl->slots = calloc(rl->nslots, sizeof *rl->slots);
	if (rl->slots == NULL) {
		free(rl);
		return NULL;
	}
	return rl;
}

void
ratelimit_free(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	free(rl->slots);
	free(rl);
}

long
ratelimit_take(struct ratelimit *rl, const char *ws, uint64_t now_ns)
{
	size_t mask = rl->nslots - 1, i = slot_of(ws, mask);
	struct bucket *b;
	double wait;

	while (rl->slots[i].ws[0] != '\0' && strcmp(rl->slots[i].ws, ws) != 0)
		i = (i + 1) & mask;
	b = &rl->slots[i];
	if (b->ws[0] == '\0') {
		/* A new bucket: make room first (keep the load under 3/4). */
		if ((rl->used + 1) * 4 > rl->nslots * 3) {
			size_t n = rl->nslots;

			if (rebuild(rl, n, now_ns) == 0 && (rl->used + 1) * 2 > n &&
			    n < RATELIMIT_MAX_BUCKETS)
				(void)rebuild(rl, n * 2, now_ns);
			if ((rl->used + 1) * 4 > rl->nslots * 3) {
				rl->untracked++;
				return 0;
			}
			return ratelimit_take(rl, ws, now_ns);
		}
		memcpy(b->ws, ws, UUID_LEN);
		b->ws[UUID_LEN] = '\0';
		b->tokens = rl->burst;
		b->t_ns = now_ns;
		rl->used++;
	}
	refill(rl, b, now_ns);
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return 0;
	}
	rl->limited++;
	wait = (1.0 - b->tokens) / rl->rate;
	if (wait >= 86400)
		return 86400;
	return (double)(long)wait < wait ? (long)wait + 1 : (long)wait < 1 ? 1 : (long)wait;
}

void
ratelimit_metrics(const struct ratelimit *rl, struct buf *out)
{
	if (rl == NULL)
		return;
	buf_printf(out, "# HELP infonchat_rate_limited_total Webhook requests refused 429 by the per-workspace rate limit.\n"
	    "# TYPE infonchat_rate_limited_total counter\ninfonchat_rate_limited_total %llu\n",
	    rl->limited);
	buf_printf(out, "# HELP infonchat_rate_limit_untracked_total Requests let through because the rate limiter's table was full.\n"
	    "# TYPE infonchat_rate_limit_untracked_total counter\ninfonchat_rate_limit_untracked_total %llu\n",
	    rl->untracked);
	buf_printf(out, "# HELP infonchat_rate_limit_buckets Workspaces with a bucket that is not full.\n"
	    "# TYPE infonchat_rate_limit_buckets gauge\ninfonchat_rate_limit_buckets %zu\n", rl->used);
}
