/*
 * loadgen: an open-loop HTTP/1.1 load generator for fixed-rate latency.
 *
 * Requests are due at start + i / rate whatever the server does; latency is
 * measured from that due time, not from when a connection was free, so a
 * slow server cannot hide its queueing (no coordinated omission). Each
 * request is a POST of the body file with a unique X-Webhook-Id.
 *
 *   loadgen -h HOST -p PORT -u PATH -r RATE -d SECONDS -c CONNS -b BODY [-k]
 *
 * -c CONNS  at most CONNS requests in flight; a due request waits in a queue
 *           for a free connection (and that wait counts in its latency).
 * -k        a new connection per request, as senders that do not keep
 *           connections open: "Connection: close" is sent, the connection is
 *           opened when a request is dispatched (so the TCP handshake counts
 *           in the latency) and closed after the response.
 *
 * Prints one line: rate_target= rate_done= elapsed_s= ok= non2xx= errors=
 * late= incomplete= p50_ms= p90_ms= p99_ms= p999_ms= max_ms=
 *
 *   elapsed_s   from the first due time to the last response (SECONDS, or
 *               more when the server fell behind)
 *   rate_done   responses received / elapsed_s (not less than SECONDS)
 *   errors      requests whose connection failed before a response
 *   late        requests never sent (not due before the run stopped)
 *   incomplete  requests sent or queued but unanswered when the run stopped
 *               (SECONDS + 5 s); they enter the percentiles with the time
 *               they had waited by then, a lower bound of their latency,
 *               so an overloaded server cannot shrink its p99 by not
 *               answering
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

struct conn {
	struct bufferevent *bev;
	int busy;
	uint64_t due_ns;          /* due time of the request in flight */
	int idx;
};

static struct event_base *base;
static struct sockaddr_in addr;
static const char *path, *host = "127.0.0.1";
static char *body;
static size_t body_len;
static double rate;
static uint64_t t_start, t_end, next_i, total;
static struct conn *conns;
static int nconns;
static uint64_t *lat;            /* latency of each completed request, ns */
static uint64_t nlat, ok, non2xx, errors;
static uint64_t *queue;          /* due times of requests waiting for a connection */
static uint64_t qhead, qtail, qcap, late;
static unsigned long long run_id;   /* random: no two runs share X-Webhook-Ids */
static unsigned long long req_seq;   /* makes each X-Webhook-Id unique in a run */
static int close_mode;               /* -k: a new connection per request */
static uint64_t incomplete;
static uint64_t t_last;              /* when the last response arrived */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int conn_open(struct conn *c);

static void
send_request(struct conn *c, uint64_t due)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	c->busy = 1;
	c->due_ns = due;
	evbuffer_add_printf(out, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
	    "X-Webhook-Id: lg-%016llx-%llu\r\n%sContent-Length: %zu\r\n\r\n", path, host, run_id,
	    req_seq++, close_mode ? "Connection: close\r\n" : "", body_len);
	evbuffer_add(out, body, body_len);
}

/*
 * Hand queued requests to free connections. Keep-alive: a free connection is
 * an open one without a request in flight. Close mode: a slot without a
 * connection; it connects now and the request waits in its output buffer
 * until the handshake is done.
 */
static void
dispatch_queue(void)
{
	for (int i = 0; i < nconns && qhead < qtail; i++) {
		struct conn *c = &conns[i];

		if (c->busy)
			continue;
		if (close_mode && c->bev == NULL && conn_open(c) < 0) {
			errors++;        /* e.g. no ephemeral port left: fails, not waits */
			qhead++;
			continue;
		}
		if (c->bev != NULL)
			send_request(c, queue[qhead++ % qcap]);
	}
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		char head[1024], *cl;
		size_t hl, blen = 0;
		int status = 0;

		if (p.pos < 0 || !c->busy)
			return;
		hl = (size_t)p.pos + 4;
		if (hl >= sizeof head) {
			errors++;
			evbuffer_drain(in, evbuffer_get_length(in));
			return;
		}
		evbuffer_copyout(in, head, hl);
		head[hl] = '\0';
		cl = strcasestr(head, "\r\nContent-Length:");
		if (cl != NULL)
			blen = strtoul(cl + 17, NULL, 10);
		if (evbuffer_get_length(in) < hl + blen)
			return;
		evbuffer_drain(in, hl + blen);
		sscanf(head, "HTTP/1.%*d %d", &status);
		if (status >= 200 && status < 300)
			ok++;
		else
			non2xx++;
		t_last = now_ns();
		lat[nlat++] = t_last - c->due_ns;
		c->busy = 0;
		if (close_mode || strcasestr(head, "\r\nConnection: close") != NULL) {
			bufferevent_free(c->bev);
			c->bev = NULL;
			if (!close_mode && conn_open(c) < 0)
				errors++;
			dispatch_queue();
			return;
		}
		dispatch_queue();
	}
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if (c->busy)
		errors++;
	c->busy = 0;
	bufferevent_free(c->bev);
	c->bev = NULL;
	if (!close_mode && now_ns() < t_end && conn_open(c) < 0)
		errors++;
}

/* Start connecting c (the output buffer holds writes until connected). */
static int
conn_open(struct conn *c)
{
	int one = 1;

	c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		return -1;
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&addr, sizeof addr) < 0) {
		bufferevent_free(c->bev);
		c->bev = NULL;
		return -1;
	}
	setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return 0;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = now_ns();

	(void)fd;
	(void)what;
	(void)arg;
	/* Every request now due joins the queue, then free connections take them. */
	while (next_i < total) {
		uint64_t due = t_start + (uint64_t)((double)next_i * 1e9 / rate);
		if (due > now)
			break;
		if (qtail - qhead >= qcap) {
			late++;          /* more than qcap waiting: counted, not sent */
		} else {
			queue[qtail++ % qcap] = due;
		}
		next_i++;
	}
	dispatch_queue();
	if (now > t_end + 5000000000u || (next_i >= total && qhead == qtail && nlat + errors + late >= total))
		event_base_loopbreak(base);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double
pct(double p)
{
	if (nlat == 0)
		return 0;
	return (double)lat[(size_t)((double)(nlat - 1) * p)] / 1e6;
}

int
main(int argc, char **argv)
{
	int port = 8080, c;
	double secs = 10;
	const char *body_file = NULL;
	FILE *f;
	long n;
	struct event *tick;
	struct timeval tv = { 0, 500 };
	uint64_t done;
	double elapsed;

	nconns = 64;
	while ((c = getopt(argc, argv, "h:p:u:r:d:c:b:k")) != -1) {
		switch (c) {
		case 'h': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'u': path = optarg; break;
		case 'r': rate = atof(optarg); break;
		case 'd': secs = atof(optarg); break;
		case 'c': nconns = atoi(optarg); break;
		case 'b': body_file = optarg; break;
		case 'k': close_mode = 1; break;
		default:
			fprintf(stderr, "usage: loadgen -h HOST -p PORT -u PATH -r RATE -d SECONDS -c CONNS -b BODY [-k]\n");
			return 64;
		}
	}
	if (path == NULL || rate <= 0 || body_file == NULL || nconns < 1) {
		fprintf(stderr, "usage: loadgen -h HOST -p PORT -u PATH -r RATE -d SECONDS -c CONNS -b BODY [-k]\n");
		return 64;
	}
	f = fopen(body_file, "rb");
	if (f == NULL || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
		perror(body_file);
		return 66;
	}
	body = malloc((size_t)n + 1);
	if (body == NULL || fread(body, 1, (size_t)n, f) != (size_t)n)
		return 70;
	fclose(f);
	body_len = (size_t)n;
	while (body_len > 0 && (body[body_len - 1] == '\n' || body[body_len - 1] == '\r'))
		body_len--;
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
		fprintf(stderr, "loadgen: -h wants an IPv4 address\n");
		return 64;
	}
	total = (uint64_t)(rate * secs);
	qcap = total + 1;
	lat = calloc(total + 1, sizeof *lat);
	queue = calloc(qcap, sizeof *queue);
	conns = calloc((size_t)nconns, sizeof *conns);
	if (lat == NULL || queue == NULL || conns == NULL)
		return 70;
	/*
	 * pid ^ time, as it was, repeated itself between two runs of one make
	 * bench (both grow by a few between runs): the later run's requests
	 * were then duplicates of the earlier's, answered 2xx but not new
	 * events.
	 */
	if (getrandom(&run_id, sizeof run_id, 0) != (ssize_t)sizeof run_id) {
		fprintf(stderr, "loadgen: getrandom: %s\n", strerror(errno));
		return 70;
	}
	{
		/* epoll's timeout is in milliseconds; a timerfd keeps ticks at 0.5 ms. */
		struct event_config *cfg = event_config_new();
		if (cfg == NULL || event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) < 0)
			return 70;
		base = event_base_new_with_config(cfg);
		event_config_free(cfg);
		if (base == NULL)
			return 70;
	}
	for (int i = 0; i < nconns && !close_mode; i++) {
		if (conn_open(&conns[i]) < 0) {
			fprintf(stderr, "loadgen: cannot connect\n");
			return 1;
		}
	}
	tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	t_start = now_ns() + 200000000u;     /* connections up first */
	t_end = t_start + (uint64_t)(secs * 1e9);
	event_add(tick, &tv);
	event_base_dispatch(base);
	done = nlat;
	{
		/* Unanswered requests count with the wait they had so far. */
		uint64_t now = now_ns();

		for (int i = 0; i < nconns; i++)
			if (conns[i].busy)
				lat[nlat++] = now - conns[i].due_ns;
		for (uint64_t q = qhead; q < qtail; q++)
			lat[nlat++] = now - queue[q % qcap];
		incomplete = nlat - done;
	}
	qsort(lat, nlat, sizeof *lat, cmp_u64);
	elapsed = t_last > t_start ? (double)(t_last - t_start) / 1e9 : 0;
	if (elapsed < secs)
		elapsed = secs;
	printf("rate_target=%.0f rate_done=%.0f elapsed_s=%.3f ok=%llu non2xx=%llu errors=%llu late=%llu "
	    "incomplete=%llu p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f p999_ms=%.2f max_ms=%.2f\n",
	    rate, (double)done / elapsed, elapsed, (unsigned long long)ok, (unsigned long long)non2xx,
	    (unsigned long long)errors, (unsigned long long)(late + (total - next_i)),
	    (unsigned long long)incomplete,
	    pct(0.5), pct(0.9), pct(0.99), pct(0.999), nlat ? (double)lat[nlat - 1] / 1e6 : 0);
	for (int i = 0; i < nconns; i++)
		if (conns[i].bev)
			bufferevent_free(conns[i].bev);
	event_free(tick);
	event_base_free(base);
	free(lat);
	free(queue);
	free(conns);
	free(body);
	return 0;
}
