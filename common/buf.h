/*
 * buf.h: growable byte buffers with an explicit ceiling.
 *
 * A buf owns its memory. Every append either succeeds completely or fails
 * (returns -1, errno ENOMEM or EMSGSIZE) and leaves the buffer as it was, so
 * a caller can build a message and check once at the end via buf->failed.
 * The contents are always NUL-terminated (not counted in len) so they can be
 * handed to C string APIs when the data has no NUL of its own.
 */
#ifndef INFONCHAT_BUF_H
#define INFONCHAT_BUF_H

#include <stddef.h>

struct buf {
	char *p;        /* NULL until the first append */
	size_t len;     /* bytes in use, excluding the terminating NUL */
	size_t cap;     /* bytes allocated */
	size_t max;     /* ceiling for len; 0 means SIZE_MAX/2 */
	int failed;     /* sticky: set when any append failed */
};

#define BUF_INIT {NULL, 0, 0, 0, 0}

void buf_init(struct buf *b, size_t max);
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Forget the contents, keep the memory and the ceiling; clears failed. */
void buf_reset(struct buf *b);
/* Release the memory; the buf is then as after buf_init(b, b->max). */
void buf_free(struct buf *b);

#endif
