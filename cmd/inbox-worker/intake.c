#include "intake.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "envelope.h"
#include "log.h"

int
hintq_init(struct hintq *q, size_t cap)
{
	q->v = calloc(cap, sizeof *q->v);
	q->n = 0;
	q->cap = q->v ? cap : 0;
	return q->v ? 0 : -1;
}

void
hintq_free(struct hintq *q)
{
	free(q->v);
	q->v = NULL;
	q->n = q->cap = 0;
}

size_t
hintq_take(struct hintq *q, struct lane *l, size_t max)
{
	size_t k = q->n < max ? q->n : max;

	if (lane_reserve(l, k) < 0)
		return 0;
	memcpy(l->req, q->v, k * sizeof *q->v);
	l->nreq = k;
	memmove(q->v, q->v + k, (q->n - k) * sizeof *q->v);
	q->n -= k;
	return k;
}

int
hint_parse(const char *line, size_t n, struct hint *h, struct buf *arena,
    const char **why)
{
	struct envelope e;

	if (envelope_parse(line, n, &e, arena, why) < 0)
		return -1;
	memcpy(h->id, e.id, sizeof h->id);
	memcpy(h->workspace_id, e.workspace_id, sizeof h->workspace_id);
	h->lineno = 0;
	h->claimed = 0;
	return 0;
}

long
intake_recv(void *sock, struct hintq *q, struct buf *arena, size_t max_line,
    unsigned long long *bad)
{
	long got = 0;

	while (q->n < q->cap) {
		zmq_msg_t m;
		const char *why;
		int more = 0;
		size_t mlen = sizeof more;

		if (zmq_msg_init(&m) < 0)
			return -1;
		if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
			int e = errno;
			zmq_msg_close(&m);
			if (e == EAGAIN || e == EINTR)
				break;
			errno = e;
			return -1;
		}
		if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &mlen) == 0 && more) {
			/* not ours: a hint is one frame; drop the rest of it */
			(*bad)++;
			log_warn("bad hint", " err=%s", log_q("more than one frame"));
			while (more && zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) >= 0 &&
			    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &mlen) == 0)
				;
		} else if (zmq_msg_size(&m) > max_line) {
			(*bad)++;
			log_warn("bad hint", " err=%s", log_q("longer than --max-line"));
		} else if (hint_parse(zmq_msg_data(&m), zmq_msg_size(&m), &q->v[q->n], arena, &why) < 0) {
			(*bad)++;
			log_warn("bad hint", " err=%s", log_q(why));
		} else {
			q->n++;
			got++;
		}
		zmq_msg_close(&m);
	}
	return got;
}
