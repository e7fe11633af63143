#include "emit.h"

#include <errno.h>
#include <string.h>

#include <zmq.h>

#include "log.h"

void
emit_lines(struct emitter *em, const struct buf *lines, size_t n)
{
	const char *p = lines->p, *end = lines->p + lines->len;

	if (n == 0 || p == NULL || (em->sock == NULL && !em->use_fd))
		return;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (em->use_fd) {
			if (lineout_put(&em->out, p, len) < 0)
				break;
			em->sent++;
		} else if (zmq_send(em->sock, p, len, ZMQ_DONTWAIT) < 0) {
			em->dropped++;
			log_debug("hint dropped", " err=%s", log_q(zmq_strerror(errno)));
		} else {
			em->sent++;
		}
		p += len + 1;
	}
	if (em->use_fd && (p < end || lineout_flush(&em->out) < 0)) {
		log_error("cannot write to stdout; outbox envelopes no longer written",
		    " err=%s", log_q(strerror(errno)));
		em->use_fd = 0;
		em->dropped += n;
	}
}
