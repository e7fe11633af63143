#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "infonchat";

/*
 * Lines wait here until the stage is about to block (log_flush() before
 * every poll) or the buffer is nearly full; warn and error lines go out at
 * once with what is before them. At thousands of events a second this is
 * one write(2) per loop turn instead of one per event. What a SIGKILL can
 * take: the lines of the loop turn it interrupted.
 */
static char pending[32768];
static size_t npending;
static enum log_level log_threshold = LL_INFO;
static const char *const level_names[] = { "debug", "info", "warn", "error" };

void
log_flush(void)
{
	size_t off = 0;

	while (off < npending) {
		ssize_t k = write(STDERR_FILENO, pending + off, npending - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;      /* nowhere to log to: drop the lines, never block the stage */
		off += (size_t)k;
	}
	npending = 0;
}

void
log_init(const char *prog)
{
	log_prog = prog;
	(void)atexit(log_flush);
}

void
log_set_level(enum log_level level)
{
	log_threshold = level;
}

int
log_level_parse(const char *name, enum log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int
log_enabled(enum log_level level)
{
	return level >= log_threshold;
}

static int
needs_quotes(const char *s)
{
	if (*s == '\0')
		return 1;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
			return 1;
	}
	return 0;
}

const char *
log_q(const char *value)
{
	static char bufs[8][512];
	static unsigned next;
	char *out = bufs[next++ % 8];
	size_t cap = sizeof bufs[0], o = 0;

	if (value == NULL)
		return "null";
	if (!needs_quotes(value))
		return value;
	out[o++] = '"';
	for (const char *s = value; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		size_t n;

		if (c == '"' || c == '\\')
			n = (size_t)snprintf(esc, sizeof esc, "\\%c", c);
		else if (c == '\n')
			n = (size_t)snprintf(esc, sizeof esc, "\\n");
		else if (c < ' ' || c == 0x7f)
			n = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
		else {
			esc[0] = (char)c;
			n = 1;
		}
		if (o + n + 5 > cap) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, esc, n);
		o += n;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

void
log_msg(enum log_level level, const char *msg, const char *kvfmt, ...)
{
	char line[4096];
	struct timespec ts;
	struct tm tm;
	size_t o;
	int n;
	va_list ap;

	if (!log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof line,
	    "ts=%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ level=%s prog=%s msg=%s",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000, level_names[level],
	    log_prog, log_q(msg));
	o = n < 0 ? 0 : (size_t)n;
	if (o >= sizeof line)
		o = sizeof line - 1;
	if (kvfmt != NULL && *kvfmt != '\0') {
		va_start(ap, kvfmt);
		n = vsnprintf(line + o, sizeof line - o, kvfmt, ap);
		va_end(ap);
		if (n > 0)
			o += (size_t)n;
		if (o >= sizeof line)
			o = sizeof line - 1;
	}
	if (o >= sizeof line - 1)
		o = sizeof line - 2;
	line[o++] = '\n';
	if (npending + o > sizeof pending)
		log_flush();
	memcpy(pending + npending, line, o);
	npending += o;
	if (level >= LL_WARN)
		log_flush();
}
