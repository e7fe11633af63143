#include "replay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "db.h"
#include "log.h"
#include "outbox.h"
#include "stage.h"

/* Send one fetched batch; *last is the seq of the last row sent. */
static int
send_rows(struct outbox *o, struct sink *s, long long *last, unsigned long long *rows)
{
	for (int i = 0; i < o->n; i++) {
		size_t tlen, elen;
		const char *topic = outbox_topic(o, i, &tlen);
		const char *env = outbox_envelope(o, i, &elen);

		if (sink_send(s, topic, tlen, env, elen) < 0)
			return -1;
		*last = strtoll(outbox_seq(o, i), NULL, 10);
		(*rows)++;
		log_debug("envelope replayed", " id=%s event_id=%s seq=%s", outbox_id(o, i),
		    outbox_event_id(o, i), outbox_seq(o, i));
	}
	return sink_flush(s);
}

int
replay_run(const struct replay *q, struct sink *s, const char *conninfo)
{
	struct outbox o;
	PGconn *conn = NULL;
	long long last = q->from - 1;
	unsigned long long rows = 0;
	enum outbox_status st = OUTBOX_OK;
	int status = EX_OK, done = 0;

	outbox_init(&o);
	while (!done && !stage_stop) {
		if (conn == NULL) {
			conn = db_connect_retry(conninfo, "outbox-relay", &stage_stop,
			    outbox_replay_prepare, NULL);
			if (conn == NULL)
				break;
		}
		if (sink_wait_ready(s, &stage_stop) < 0)
			break;
		st = outbox_replay_open(&o, conn, last + 1, q->to, q->topics, q->kinds);
		while (st == OUTBOX_OK && !stage_stop) {
			st = outbox_replay_fetch(&o, conn, q->fetch);
			if (st != OUTBOX_OK)
				break;
			if (o.n == 0) {
				done = 1;
				break;
			}
			if (send_rows(&o, s, &last, &rows) < 0) {
				log_info("output closed", " err=%s", log_q(strerror(errno)));
				done = 1;
				break;
			}
		}
		if (st == OUTBOX_OK) {
			outbox_replay_close(&o, conn);
		} else if (st == OUTBOX_LOST) {
			log_warn("database connection lost; resuming replay", " after_seq=%lld err=%s",
			    last, log_q(o.err));
			PQfinish(conn);
			conn = NULL;
		} else {
			log_error("replay failed", " err=%s", log_q(o.err));
			status = EX_SOFTWARE;
			done = 1;
		}
	}
	log_info("replay done", " rows=%llu from=%lld last_seq=%lld%s", rows, q->from, last,
	    stage_stop ? " stopped=1" : "");
	outbox_free(&o);
	PQfinish(conn);
	return status;
}
