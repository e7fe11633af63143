/*
 * replay.h: catch-up from the durable log (--replay-from SEQ).
 *
 * Sends the envelope of every outbox row with seq in [from, to] whose topic
 * starts with one of the topic prefixes and whose kind starts with one of
 * the kind prefixes (either list empty: all), published or not, in seq
 * order, then returns. Rows are read from one snapshot; if the connection
 * breaks, the relay reconnects and goes on after the last seq it sent, so
 * nothing is sent twice or skipped. A row whose transaction commits after
 * the snapshot was taken is not in it (live delivery or a later replay
 * brings it).
 */
#ifndef RELAY_REPLAY_H
#define RELAY_REPLAY_H

#include "sink.h"

struct replay {
	long long from, to;
	const char *topics;     /* JSON array of prefixes, or NULL for all */
	const char *kinds;      /* likewise */
	int fetch;              /* rows per round trip */
};

/* Returns a sysexits status: 0 done (or stopped, or the output closed),
 * 70 when the query failed for a reason other than a lost connection. */
int replay_run(const struct replay *q, struct sink *s, const char *conninfo);

#endif
