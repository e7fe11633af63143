#include "lineout.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"

int
lineout_init(struct lineout *w, int fd, size_t cap)
{
	memset(w, 0, sizeof *w);
	w->fd = fd;
	w->cap = cap ? cap : 1;
	w->p = malloc(w->cap);
	if (w->p == NULL) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

/* Write every byte of iov[0..n), continuing short writes. */
static int
write_all(struct lineout *w, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t k = writev(w->fd, iov, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* a non-blocking descriptor (inherited): wait until it takes more */
			struct pollfd p = { w->fd, POLLOUT, 0 };
			log_flush();
			if (poll(&p, 1, -1) >= 0 || errno == EINTR)
				continue;
		}
		if (k < 0) {
			w->err = errno;
			w->len = 0;
			return -1;
		}
		while (n > 0 && (size_t)k >= iov->iov_len) {
			k -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + k;
			iov->iov_len -= (size_t)k;
		}
	}
	return 0;
}

int
lineout_flush(struct lineout *w)
{
	struct iovec iov;

	if (w->err) {
		errno = w->err;
		return -1;
	}
	if (w->len == 0)
		return 0;
	iov = (struct iovec){ w->p, w->len };
	if (write_all(w, &iov, 1) < 0)
		return -1;
	w->len = 0;
	return 0;
}

int
lineout_put(struct lineout *w, const char *line, size_t n)
{
	if (w->err) {
		errno = w->err;
		return -1;
	}
	if (n + 1 > w->cap - w->len && lineout_flush(w) < 0)
		return -1;
	if (n + 1 > w->cap) {
		struct iovec iov[2] = { { (void *)line, n }, { (void *)"\n", 1 } };
		if (write_all(w, iov, 2) < 0)
			return -1;
	} else {
		memcpy(w->p + w->len, line, n);
		w->p[w->len + n] = '\n';
		w->len += n + 1;
	}
	w->lines++;
	return 0;
}

void
lineout_free(struct lineout *w)
{
	free(w->p);
	w->p = NULL;
	w->len = w->cap = 0;
}
