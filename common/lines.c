#include "lines.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

void
lines_init(struct line_reader *lr, int fd, size_t max_line)
{
	memset(lr, 0, sizeof *lr);
	lr->fd = fd;
	lr->max_line = max_line;
	buf_init(&lr->buf, 0);
}

void
lines_free(struct line_reader *lr)
{
	buf_free(&lr->buf);
}

enum line_result
lines_next(struct line_reader *lr, const char **line, size_t *len)
{
	for (;;) {
		char *start;

		if (lr->buf.p == NULL)
			return lr->eof ? LINE_EOF : LINE_NEED_MORE;
		start = lr->buf.p + lr->pos;
		size_t avail = lr->buf.len - lr->pos;
		char *nl = avail ? memchr(start, '\n', avail) : NULL;

		if (nl == NULL) {
			if (avail > lr->max_line) {
				/* Drop what we have of the over-long line, keep skipping. */
				if (!lr->skipping) {
					lr->skipping = 1;
					lr->lineno++;
				}
				lr->pos = lr->buf.len;
				continue;
			}
			if (!lr->eof)
				return LINE_NEED_MORE;
			if (avail == 0 && !lr->skipping)
				return LINE_EOF;
			/* A last line without a newline. */
			nl = start + avail;
		}
		lr->pos += (size_t)(nl - start) + (nl < lr->buf.p + lr->buf.len ? 1 : 0);
		if (lr->skipping) {
			lr->skipping = 0;
			return LINE_TOO_LONG;
		}
		lr->lineno++;
		*len = (size_t)(nl - start);
		if (*len > lr->max_line)
			return LINE_TOO_LONG;
		if (*len > 0 && start[*len - 1] == '\r')
			(*len)--;
		*line = start;
		return LINE_OK;
	}
}

long
lines_fill(struct line_reader *lr)
{
	ssize_t n;

	/* Compact: move the unread tail to the front. */
	if (lr->pos > 0) {
		size_t rest = lr->buf.len - lr->pos;
		memmove(lr->buf.p, lr->buf.p + lr->pos, rest);
		lr->buf.len = rest;
		lr->pos = 0;
	}
	if (buf_reserve(&lr->buf, 65536) < 0)
		return -1;
	n = read(lr->fd, lr->buf.p + lr->buf.len, 65536);
	if (n < 0)
		return -1;
	if (n == 0)
		lr->eof = 1;
	lr->buf.len += (size_t)n;
	return (long)n;
}

int
lines_ready(const struct line_reader *lr)
{
	struct pollfd p = { lr->fd, POLLIN, 0 };

	return poll(&p, 1, 0) > 0;
}
