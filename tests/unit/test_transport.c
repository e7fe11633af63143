/* Unit tests of common/lineout.c, common/zpeers.c and common/clock.c. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "check.h"
#include "clock.h"
#include "endpoint.h"
#include "lineout.h"
#include "zpeers.h"

/* Everything readable on fd now (non-blocking after the first read). */
static size_t
drain(int fd, char *out, size_t cap)
{
	size_t n = 0;

	for (;;) {
		ssize_t k = read(fd, out + n, cap - n);
		if (k <= 0)
			break;
		n += (size_t)k;
		if (n == cap)
			break;
	}
	return n;
}

static void
test_lineout(void)
{
	struct lineout w;
	int p[2];
	char got[256], big[100];
	size_t n;

	CHECK(pipe2(p, O_NONBLOCK) == 0);
	CHECK(lineout_init(&w, p[1], 16) == 0);
	/* buffered until it would not fit */
	CHECK(lineout_put(&w, "abc", 3) == 0);
	CHECK(lineout_put(&w, "defgh", 5) == 0);
	CHECK(w.len == 10);
	CHECK(lineout_put(&w, "0123456", 7) == 0);   /* flushes the first two */
	CHECK(w.len == 8);
	/* longer than the buffer: written straight through, after what waits */
	memset(big, 'x', sizeof big);
	CHECK(lineout_put(&w, big, sizeof big) == 0);
	CHECK(w.len == 0);
	CHECK(lineout_put(&w, "", 0) == 0);
	CHECK(lineout_flush(&w) == 0);
	CHECK(w.lines == 5);
	n = drain(p[0], got, sizeof got);
	CHECK(n == 4 + 6 + 8 + sizeof big + 1 + 1);
	CHECK(memcmp(got, "abc\ndefgh\n0123456\nxxx", 21) == 0);
	CHECK(got[n - 2] == '\n' && got[n - 1] == '\n');
	/* the reader goes away: EPIPE, sticky */
	close(p[0]);
	CHECK(lineout_put(&w, "late", 4) == 0);      /* only buffered */
	errno = 0;
	CHECK(lineout_flush(&w) < 0 && errno == EPIPE);
	errno = 0;
	CHECK(lineout_put(&w, "x", 1) < 0 && errno == EPIPE);
	CHECK(w.len == 0);
	lineout_free(&w);
	close(p[1]);
}

/* Poll the watcher until count reaches want or 3 s pass. */
static int
wait_count(struct zpeers *z, int want)
{
	long long end = clock_ms() + 3000;

	while (clock_ms() < end) {
		zmq_pollitem_t pi = { zpeers_socket(z), 0, ZMQ_POLLIN, 0 };
		if (zmq_poll(&pi, 1, 100) < 0)
			return -1;
		if (zpeers_update(z) < 0)
			return -1;
		if (z->count == want)
			return 0;
	}
	return -1;
}

static void
test_zpeers(void)
{
	char dir[] = "/tmp/zpeers-XXXXXX", addr[64];
	void *ctx = zmq_ctx_new();
	void *pub, *xsub;
	struct zpeers z;
	long long t0;

	CHECK(ctx != NULL);
	CHECK(mkdtemp(dir) != NULL);
	snprintf(addr, sizeof addr, "ipc://%s/s.sock", dir);
	pub = zsock_new(ctx, ZMQ_PUB, 0);
	CHECK(pub != NULL);
	CHECK(zpeers_watch(&z, ctx, pub) == 0);
	CHECK(zmq_connect(pub, addr) == 0);
	CHECK(zpeers_update(&z) == 0);
	CHECK(z.count == 0);
	CHECK(!zpeers_settled(&z, clock_ms(), 0));

	/* the peer comes: counted, settled only after the settle time */
	xsub = zsock_new(ctx, ZMQ_XSUB, 0);
	CHECK(xsub != NULL);
	CHECK(zmq_bind(xsub, addr) == 0);
	CHECK(wait_count(&z, 1) == 0);
	t0 = clock_ms();
	CHECK(zpeers_settled(&z, z.since + 50, 50));
	CHECK(!zpeers_settled(&z, z.since + 49, 50));
	CHECK(z.since <= t0);
	CHECK(z.connects == 1);

	/* the peer goes: 0 again */
	zsock_destroy(&xsub);
	CHECK(wait_count(&z, 0) == 0);
	CHECK(z.disconnects == 1);
	CHECK(!zpeers_settled(&z, clock_ms(), 0));

	/* and comes back */
	xsub = zsock_new(ctx, ZMQ_XSUB, 0);
	CHECK(xsub != NULL && zmq_bind(xsub, addr) == 0);
	CHECK(wait_count(&z, 1) == 0);
	CHECK(z.connects == 2);

	zpeers_close(&z);
	CHECK(zpeers_socket(&z) == NULL);
	zpeers_close(&z);                 /* twice is fine */
	zsock_destroy(&xsub);
	zsock_destroy(&pub);
	CHECK(zmq_ctx_term(ctx) == 0);
	rmdir(dir);
}

static void
test_clock(void)
{
	long long a = clock_ms();

	CHECK(clock_until(a - 10, 1000) == 0);
	CHECK(clock_until(a + 100000, 1000) == 1000);
	CHECK(clock_until(a + 500, 1000) <= 500 && clock_until(a + 500, 1000) >= 400);
	CHECK(clock_ms() >= a);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_lineout();
	test_zpeers();
	test_clock();
	return check_done("test_transport");
}
