/*
 * lines.h: newline-delimited input from a file descriptor, with a bounded
 * line length. A line longer than max_line is not returned: the reader
 * skips to its end and reports it (LINE_TOO_LONG) with its number, so one
 * bad line never takes the rest of a stream with it.
 */
#ifndef INFONCHAT_LINES_H
#define INFONCHAT_LINES_H

#include <stddef.h>

#include "buf.h"

struct line_reader {
	int fd;
	size_t max_line;
	struct buf buf;
	size_t pos;         /* start of the next unread line in buf */
	long lineno;        /* number of the line last returned */
	int eof;
	int skipping;       /* inside an over-long line */
};

enum line_result { LINE_OK, LINE_TOO_LONG, LINE_NEED_MORE, LINE_EOF };

void lines_init(struct line_reader *lr, int fd, size_t max_line);
void lines_free(struct line_reader *lr);

/*
 * Next complete line from what has been read (without the newline and a
 * trailing CR). LINE_NEED_MORE: call lines_fill(). LINE_EOF: nothing left
 * (a last line without a newline is still returned first). The line stays
 * valid until the next call.
 */
enum line_result lines_next(struct line_reader *lr, const char **line, size_t *len);

/* True when fd has input now, so lines_fill() would not block. */
int lines_ready(const struct line_reader *lr);

/* Read once from fd. Returns bytes read, 0 at end of file, -1 on error (errno). */
long lines_fill(struct line_reader *lr);

#endif
