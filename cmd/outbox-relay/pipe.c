#include "pipe.h"

#include <errno.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "envelope.h"
#include "json.h"
#include "lines.h"
#include "log.h"
#include "stage.h"

struct topic_find {
	struct json_span value;
	int found;
};

static int
on_member(const struct json_span *key, const struct json_span *value, void *arg)
{
	struct topic_find *f = arg;

	/* Last one wins, as in PostgreSQL's json operators. */
	if (json_string_equals(key, "topic")) {
		f->value = *value;
		f->found = 1;
	}
	return 0;
}

int
outbox_line_topic(const char *line, size_t n, struct buf *topic, const char **why)
{
	struct json_span obj;
	struct json_error err;
	struct topic_find f = { { NULL, 0, JSON_T_NULL }, 0 };
	int flags;

	buf_reset(topic);
	if (json_check_object(line, n, OUTBOX_MAX_DEPTH, &obj, &err) != JSON_OK) {
		*why = err.status == JSON_NOT_OBJECT ? "not a JSON object" : err.what;
		return -1;
	}
	(void)json_object_each(&obj, on_member, &f);
	if (!f.found || f.value.type != JSON_T_STRING) {
		*why = "no \"topic\" string";
		return -1;
	}
	flags = json_string_decode(&f.value, topic);
	if (flags < 0) {
		*why = "topic too long";
		return -1;
	}
	if (flags != 0 || topic->len == 0) {
		*why = "topic empty or not text";
		return -1;
	}
	return 0;
}

int
pipe_run(struct sink *s, size_t max_line)
{
	struct line_reader lr;
	struct buf topic;
	unsigned long long bad = 0;
	int status = EX_OK, done = 0, closed = 0;

	lines_init(&lr, STDIN_FILENO, max_line);
	buf_init(&topic, 4096);
	while (!done && !stage_stop) {
		const char *line, *why;
		size_t len;

		switch (lines_next(&lr, &line, &len)) {
		case LINE_OK:
			if (len == 0)
				break;
			if (outbox_line_topic(line, len, &topic, &why) < 0) {
				bad++;
				log_error("bad envelope line", " line=%ld err=%s", lr.lineno, log_q(why));
				break;
			}
			if (sink_wait_ready(s, &stage_stop) < 0)
				break;
			if (sink_send(s, topic.p, topic.len, line, len) < 0) {
				closed = done = 1;
				break;
			}
			log_debug("envelope passed", " line=%ld topic=%s", lr.lineno, log_q(topic.p));
			break;
		case LINE_TOO_LONG:
			bad++;
			log_error("bad envelope line", " line=%ld err=%s", lr.lineno,
			    log_q("longer than --max-line"));
			break;
		case LINE_EOF:
			done = 1;
			break;
		case LINE_NEED_MORE:
			/* About to wait for input: what we have goes out first. */
			if (sink_flush(s) < 0) {
				closed = done = 1;
				break;
			}
			if (lines_fill(&lr) < 0 && errno != EINTR) {
				log_error("cannot read stdin", " err=%s", log_q(strerror(errno)));
				status = EX_IOERR;
				done = 1;
			}
			break;
		}
	}
	if (closed || sink_flush(s) < 0)
		log_info("output closed", " err=%s", log_q(strerror(errno)));
	log_info("input done", " lines=%ld sent=%llu bad_lines=%llu", lr.lineno, s->sent, bad);
	lines_free(&lr);
	buf_free(&topic);
	if (status == EX_OK && bad > 0)
		status = EX_DATAERR;
	return status;
}
