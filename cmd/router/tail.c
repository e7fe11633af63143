#include "tail.h"

#include <errno.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "lineout.h"
#include "log.h"
#include "zpeers.h"

#define BURST 4096

struct tail {
	const struct tail_config *cfg;
	void *sub;
	struct zpeers peers;
	struct lineout out;
	unsigned long long received, printed, filtered, malformed;
};

/* Does the kind part of topic[0..n) start with one of the kind prefixes? */
static int
kind_wanted(const struct tail_config *cfg, const char *topic, size_t n)
{
	const char *slash = memchr(topic, '/', n);
	const char *kind = slash ? slash + 1 : topic;
	size_t klen = n - (size_t)(kind - topic);

	if (cfg->nkinds == 0)
		return 1;
	for (int i = 0; i < cfg->nkinds; i++) {
		size_t plen = strlen(cfg->kinds[i]);
		if (plen <= klen && memcmp(kind, cfg->kinds[i], plen) == 0)
			return 1;
	}
	return 0;
}

/* Receive one message and print it. Returns 1 got one, 0 none, -1 error. */
static int
take_message(struct tail *t)
{
	zmq_msg_t part[2];
	int nparts = 0, more = 1, rc = 1;

	while (more) {
		zmq_msg_t m;

		if (zmq_msg_init(&m) < 0)
			return -1;
		if (zmq_msg_recv(&m, t->sub, ZMQ_DONTWAIT) < 0) {
			int e = errno;
			(void)zmq_msg_close(&m);
			if (nparts == 0 && (e == EAGAIN || e == EINTR))
				return 0;
			rc = -1;
			break;
		}
		more = zmq_msg_more(&m);
		if (nparts < 2)
			part[nparts++] = m;
		else {
			nparts++;
			(void)zmq_msg_close(&m);
		}
	}
	if (rc > 0) {
		t->received++;
		if (nparts != 2 || memchr(zmq_msg_data(&part[1]), '\n', zmq_msg_size(&part[1]))) {
			t->malformed++;
			log_warn("malformed message", " frames=%d", nparts);
		} else if (!kind_wanted(t->cfg, zmq_msg_data(&part[0]), zmq_msg_size(&part[0]))) {
			t->filtered++;
		} else if (lineout_put(&t->out, zmq_msg_data(&part[1]), zmq_msg_size(&part[1])) < 0) {
			rc = -1;
		} else {
			t->printed++;
		}
	}
	for (int i = 0; i < nparts && i < 2; i++)
		(void)zmq_msg_close(&part[i]);
	return rc;
}

static int
tail_open(struct tail *t, void *ctx, const struct endpoint *in)
{
	int hwm = t->cfg->hwm;

	t->sub = zsock_new(ctx, ZMQ_SUB, 0);
	if (t->sub == NULL || zmq_setsockopt(t->sub, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0)
		return -1;
	if (t->cfg->ntopics == 0 && zmq_setsockopt(t->sub, ZMQ_SUBSCRIBE, "", 0) < 0)
		return -1;
	for (int i = 0; i < t->cfg->ntopics; i++)
		if (zmq_setsockopt(t->sub, ZMQ_SUBSCRIBE, t->cfg->topics[i],
		    strlen(t->cfg->topics[i])) < 0)
			return -1;
	if (zpeers_watch(&t->peers, ctx, t->sub) < 0)
		return -1;
	return zsock_attach(t->sub, in);
}

int
tail_run(void *ctx, const struct endpoint *in, const struct tail_config *cfg,
    struct stage *st)
{
	struct tail t;
	int status = EX_OK, ready = 0, gone = 0;

	memset(&t, 0, sizeof t);
	t.cfg = cfg;
	if (lineout_init(&t.out, STDOUT_FILENO, 256 * 1024) < 0)
		return EX_OSERR;
	if (tail_open(&t, ctx, in) < 0) {
		log_error("cannot open input", " in=%s err=%s", endpoint_text(in),
		    log_q(zmq_strerror(errno)));
		status = EX_UNAVAILABLE;
		goto out;
	}
	log_info("tailing", " in=%s topics=%d kinds=%d hwm=%d", endpoint_text(in),
	    cfg->ntopics, cfg->nkinds, cfg->hwm);
	while (!stage_stop && !gone) {
		/* stdout with no events: poll still reports POLLERR/POLLHUP when
		 * the reader of a pipe has gone away. */
		zmq_pollitem_t pi[3] = {
			{ t.sub, 0, ZMQ_POLLIN, 0 },
			{ zpeers_socket(&t.peers), 0, ZMQ_POLLIN, 0 },
			{ NULL, STDOUT_FILENO, 0, 0 },
		};
		long timeout = 1000;
		int rc = 0;

		if (!ready && t.peers.count > 0)
			timeout = clock_until(t.peers.since + TAIL_SETTLE_MS + 1, 1000);
		log_flush();
		if (zmq_poll(pi, 3, timeout) < 0 && errno != EINTR) {
			log_error("poll failed", " err=%s", log_q(zmq_strerror(errno)));
			status = EX_SOFTWARE;
			break;
		}
		if (pi[2].revents & ZMQ_POLLERR)
			gone = 1;
		(void)zpeers_update(&t.peers);
		if (!ready && zpeers_settled(&t.peers, clock_ms(), TAIL_SETTLE_MS)) {
			ready = 1;
			log_info("ready", " in=%s", endpoint_text(in));
			stage_ready(st);
		}
		for (int i = 0; i < BURST && (rc = take_message(&t)) > 0; i++)
			;
		if (rc < 0 || lineout_flush(&t.out) < 0)
			gone = 1;
		if (stage_reload) {
			stage_reload = 0;
			log_info("reload requested: nothing to reload", " received=%llu printed=%llu",
			    t.received, t.printed);
		}
	}
	if (gone)
		log_info("output closed", " err=%s", log_q(strerror(t.out.err ? t.out.err : EPIPE)));
	else
		(void)lineout_flush(&t.out);
	log_info("stopped", " received=%llu printed=%llu filtered=%llu malformed=%llu",
	    t.received, t.printed, t.filtered, t.malformed);
out:
	zpeers_close(&t.peers);
	zsock_destroy(&t.sub);
	lineout_free(&t.out);
	return status;
}
