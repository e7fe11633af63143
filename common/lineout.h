/*
 * lineout.h: newline-delimited output to a file descriptor, buffered.
 *
 * lineout_put() appends one line and its newline to a bounded buffer,
 * writing the buffer out first when the line would not fit (a line longer
 * than the buffer is written straight through). Nothing is written at any
 * other time: the caller decides when lines must be out (lineout_flush()
 * before it waits for more input, or before it acts on "written", such as
 * marking rows published). Writes are whole: a short write is continued,
 * EINTR retried, and on a non-blocking descriptor EAGAIN waits (poll) until
 * the reader takes more. A write error (EPIPE when the reader went away) is sticky:
 * every later call returns -1 with that errno, and nothing is buffered.
 * The caller ignores SIGPIPE (stage_signals() does).
 */
#ifndef INFONCHAT_LINEOUT_H
#define INFONCHAT_LINEOUT_H

#include <stddef.h>

struct lineout {
	int fd;
	char *p;            /* buffer of cap bytes, owned */
	size_t len, cap;
	int err;            /* errno of the first failed write, else 0 */
	unsigned long long lines;   /* lines accepted (put) so far */
};

/* cap: buffer size in bytes (at least 1). Returns 0, or -1 (ENOMEM). */
int lineout_init(struct lineout *w, int fd, size_t cap);

/* Append line[0..n) and "\n". Returns 0, or -1 with errno (sticky error). */
int lineout_put(struct lineout *w, const char *line, size_t n);

/* Write out what is buffered. Returns 0, or -1 with errno. */
int lineout_flush(struct lineout *w);

/* Release the buffer (does not flush, does not close fd). */
void lineout_free(struct lineout *w);

#endif
