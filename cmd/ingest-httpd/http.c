#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "metrics.h"

#define CHUNK_LINE_MAX 1024
#define LINGER_MS 2000
#define LINGER_BYTES (1024 * 1024)

enum conn_state {
	ST_HEAD,        /* waiting for a complete request head */
	ST_BODY,        /* Content-Length body */
	ST_CHUNK_SIZE,  /* chunked: size line */
	ST_CHUNK_DATA,  /* chunked: data + CRLF */
	ST_TRAILER,     /* chunked: trailer lines until an empty one */
	ST_BUSY,        /* handed to the application, waiting for its reply */
	ST_LINGER       /* reply sent with close; discarding input until EOF */
};

struct http_server {
	struct event_base *base;
	struct evconnlistener *lis;
	struct http_limits lim;
	http_fn on_head, on_request;
	void (*after_read)(void *arg);
	void *arg;
	struct http_conn *conns;      /* all open connections */
	int nconns, nbusy;
	int draining, paused;
};

struct http_conn {
	struct http_server *srv;
	struct http_conn *prev, *next;
	struct bufferevent *bev;
	struct event *timer;
	enum conn_state state;
	struct http_request req;
	struct buf head;              /* the current request's head bytes */
	struct header *hdrs;          /* req.headers: grown on demand, kept */
	size_t hdrs_cap;
	struct buf body;
	long long remaining;          /* body or chunk bytes still to read */
	int keep_alive;
	int close_after;              /* close once the reply is written */
	int peer_gone;
	int peer_eof;                 /* the client sent EOF: no more requests */
	int in_process;
	size_t lingered;
};

static void conn_process(struct http_conn *c);
static void conn_free(struct http_conn *c);
static void conn_maybe_finish(struct http_conn *c);

uint64_t
http_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
timer_arm(struct http_conn *c, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(c->timer, &tv);
}

static const char *
status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 202: return "Accepted";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 417: return "Expectation Failed";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

const struct header *
http_header(const struct http_request *req, const char *lower)
{
	for (size_t i = 0; i < req->nheaders; i++)
		if (header_name_is(&req->headers[i], lower))
			return &req->headers[i];
	return NULL;
}

static void
request_reset(struct http_conn *c)
{
	memset(&c->req, 0, sizeof c->req);
	c->req.conn = c;
	c->req.headers = c->hdrs;
	c->req.content_length = -1;
	c->req.body = "";
	buf_reset(&c->head);
	buf_reset(&c->body);
	c->remaining = 0;
	c->state = ST_HEAD;
}

/* After the reply with close is written: stop sending, drain input a while. */
static void
conn_linger(struct http_conn *c)
{
	evutil_socket_t fd = bufferevent_getfd(c->bev);

	c->state = ST_LINGER;
	if (fd >= 0)
		shutdown(fd, SHUT_WR);
	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	bufferevent_enable(c->bev, EV_READ);
	timer_arm(c, LINGER_MS);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;

	(void)bev;
	if (c->close_after && c->state != ST_BUSY && c->state != ST_LINGER) {
		if (c->peer_gone || c->peer_eof) {
			/* Inside conn_process, conn_maybe_finish() frees it. */
			if (!c->in_process)
				conn_free(c);
		} else {
			conn_linger(c);
		}
	}
}

void
http_reply(struct http_request *req, int status, const char *content_type,
    const char *extra_headers, const char *body, size_t len)
{
	struct http_conn *c = req->conn;
	struct http_server *srv = c->srv;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	int was_busy = c->state == ST_BUSY;
	char small[1024], *msg = small;
	size_t mlen, sent = 0, clen = len;
	int hn;

	if (req->replied)
		abort();    /* a second reply is a bug in the caller */
	req->replied = 1;
	if (!c->keep_alive || srv->draining || c->state != ST_BUSY)
		c->close_after = 1;
	if (strcmp(req->method ? req->method : "", "HEAD") == 0)
		len = 0;    /* the headers say what GET would send */
	hn = snprintf(small, sizeof small,
	    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
	    status, status_text(status), content_type, clen,
	    extra_headers ? extra_headers : "",
	    c->close_after ? "Connection: close\r\n" :
	    (req->minor == 0 ? "Connection: keep-alive\r\n" : ""));
	if (hn < 0 || (size_t)hn >= sizeof small)
		abort();    /* headers are ours and short */
	mlen = (size_t)hn + len;
	if (mlen > sizeof small) {
		msg = malloc(mlen);
		if (msg == NULL) {
			msg = small;
			mlen = (size_t)hn;     /* headers only; the client sees a short body */
		} else {
			memcpy(msg, small, (size_t)hn);
		}
	}
	if (mlen > (size_t)hn)
		memcpy(msg + hn, body, mlen - (size_t)hn);
	/*
	 * Write straight to the socket when nothing is queued before us: most
	 * replies then cost one send(2) and no epoll changes. What the socket
	 * does not take now goes to the bufferevent.
	 */
	if (evbuffer_get_length(out) == 0 && !c->peer_gone) {
		ssize_t w = send(bufferevent_getfd(c->bev), msg, mlen, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0)
			sent = (size_t)w;
	}
	if (sent < mlen)
		evbuffer_add(out, msg + sent, mlen - sent);
	if (msg != small)
		free(msg);
	if (was_busy) {
		srv->nbusy--;
	}
	if (c->close_after) {
		/* Stop parsing; on_write closes (or lingers) once the reply is out. */
		c->state = ST_HEAD;
		bufferevent_disable(c->bev, EV_READ);
		if (c->peer_gone) {
			conn_free(c);
			return;
		}
		if (evbuffer_get_length(out) == 0)
			on_write(c->bev, c);
		return;
	}
	request_reset(c);
	if (!(bufferevent_get_enabled(c->bev) & EV_READ))
		bufferevent_enable(c->bev, EV_READ);
	timer_arm(c, srv->lim.idle_timeout_ms);
	if (!c->in_process)
		conn_process(c);
}

void
http_request_drop_body(struct http_request *req)
{
	buf_free(&req->conn->body);
	req->body = "";
	req->body_len = 0;
}

void
http_reply_error(struct http_request *req, int status, const char *code,
    const char *message, const char *extra_headers)
{
	struct buf b = BUF_INIT;

	buf_printf(&b, "{\"error\":\"%s\",\"message\":", code);
	json_escape(&b, message, strlen(message));
	buf_putc(&b, '}');
	if (b.failed)
		http_reply(req, status, "application/json", extra_headers, "{}", 2);
	else
		http_reply(req, status, "application/json", extra_headers, b.p, b.len);
	buf_free(&b);
}

/* Framing errors before the application has seen the request. */
static void
conn_error(struct http_conn *c, int status, const char *code, const char *message)
{
	log_debug("http request rejected", " status=%d error=%s", status, code);
	metrics_request(status, code);
	c->keep_alive = 0;
	/* Not busy: http_reply() closes after writing. */
	c->state = ST_HEAD;
	if (c->req.method == NULL)
		c->req.method = "";
	http_reply_error(&c->req, status, code, message, NULL);
}

static int
is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int
token_list_has(const char *v, size_t n, const char *tok)
{
	size_t tl = strlen(tok), i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
			return 1;
	}
	return 0;
}

/*
 * Room for one more header field. The array starts small and doubles up to
 * --max-headers: a fixed array of the most allowed (256) was 8 KB of every
 * connection, cleared on every request, for the dozen fields a sender uses.
 */
static int
headers_grow(struct http_conn *c)
{
	size_t max = c->srv->lim.max_headers;
	size_t cap = c->hdrs_cap ? c->hdrs_cap * 2 : 16;
	struct header *h;

	if (cap > max)
		cap = max;
	h = realloc(c->hdrs, cap * sizeof *h);
	if (h == NULL)
		return -1;
	c->hdrs = c->req.headers = h;
	c->hdrs_cap = cap;
	return 0;
}

/*
 * Parse the head in c->head (ends in CRLFCRLF). Returns 0, or -1 after
 * answering with the error.
 */
static int
parse_head(struct http_conn *c)
{
	struct http_request *r = &c->req;
	char *p = c->head.p, *end = c->head.p + c->head.len - 2;   /* before the final CRLF */
	char *line_end, *sp1, *sp2, *target;
	int have_te = 0, have_host = 0;

	/* Request line: METHOD SP request-target SP HTTP/1.x CRLF */
	line_end = memchr(p, '\r', (size_t)(end - p));
	if (line_end == NULL || line_end[1] != '\n')
		return conn_error(c, 400, "bad_request", "malformed request line"), -1;
	*line_end = '\0';
	sp1 = strchr(p, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (sp1 == NULL || sp2 == NULL || sp1 == p || sp1 - p > 16 || sp2 == sp1 + 1)
		return conn_error(c, 400, "bad_request", "malformed request line"), -1;
	for (char *q = p; q < sp1; q++)
		if (!is_tchar((unsigned char)*q))
			return conn_error(c, 400, "bad_request", "malformed method"), -1;
	*sp1 = '\0';
	*sp2 = '\0';
	r->method = p;
	if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
		r->minor = 1;
	else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
		r->minor = 0;
	else if (strncmp(sp2 + 1, "HTTP/", 5) == 0)
		return conn_error(c, 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1"), -1;
	else
		return conn_error(c, 400, "bad_request", "malformed request line"), -1;
	c->keep_alive = r->minor == 1;
	target = sp1 + 1;
	for (char *q = target; *q; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
			return conn_error(c, 400, "bad_request", "malformed request target"), -1;
	if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
		/* absolute-form: the path starts after the authority */
		char *slash = strchr(strstr(target, "://") + 3, '/');
		if (slash == NULL)
			return conn_error(c, 400, "bad_request", "absolute request target without a path"), -1;
		target = slash;
	} else if (target[0] != '/') {
		return conn_error(c, 400, "bad_request", "request target must be a path"), -1;
	}
	r->path = target;
	{
		char *qm = strchr(target, '?');
		if (qm != NULL) {
			*qm = '\0';
			r->query = qm + 1;
			r->query_len = strlen(qm + 1);
		}
		r->path_len = strlen(target);
	}

	/* Header fields */
	p = line_end + 2;
	while (p < end) {
		char *colon, *v, *ve;
		struct header *h;

		line_end = memchr(p, '\r', (size_t)(end - p + 1));
		if (line_end == NULL || line_end[1] != '\n')
			return conn_error(c, 400, "bad_request", "header line not ended by CRLF"), -1;
		if (*p == ' ' || *p == '\t')
			return conn_error(c, 400, "bad_request", "obsolete header line folding"), -1;
		colon = memchr(p, ':', (size_t)(line_end - p));
		if (colon == NULL || colon == p)
			return conn_error(c, 400, "bad_request", "malformed header line"), -1;
		for (char *q = p; q < colon; q++)
			if (!is_tchar((unsigned char)*q))
				return conn_error(c, 400, "bad_request", "malformed header name"), -1;
		v = colon + 1;
		ve = line_end;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		for (char *q = v; q < ve; q++) {
			unsigned char ch = (unsigned char)*q;
			if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
				return conn_error(c, 400, "bad_request", "control character in a header value"), -1;
		}
		if (r->nheaders >= c->srv->lim.max_headers)
			return conn_error(c, 431, "headers_too_large", "too many header fields"), -1;
		if (r->nheaders == c->hdrs_cap && headers_grow(c) < 0)
			return conn_error(c, 503, "overloaded", "out of memory"), -1;
		h = &r->headers[r->nheaders++];
		h->name = p;
		h->name_len = (size_t)(colon - p);
		h->value = v;
		h->value_len = (size_t)(ve - v);
		*ve = '\0';     /* values are NUL-terminated for the application */

		if (header_name_is(h, "content-length")) {
			long long n = 0;
			if (r->content_length >= 0)
				return conn_error(c, 400, "bad_request", "more than one Content-Length"), -1;
			if (h->value_len == 0 || h->value_len > 18)
				return conn_error(c, 400, "bad_request", "malformed Content-Length"), -1;
			for (size_t i = 0; i < h->value_len; i++) {
				if (v[i] < '0' || v[i] > '9')
					return conn_error(c, 400, "bad_request", "malformed Content-Length"), -1;
				n = n * 10 + (v[i] - '0');
			}
			r->content_length = n;
		} else if (header_name_is(h, "transfer-encoding")) {
			if (have_te++ || h->value_len != 7 || strncasecmp(v, "chunked", 7) != 0)
				return conn_error(c, 400, "bad_request", "only a single Transfer-Encoding: chunked is supported"), -1;
			r->chunked = 1;
		} else if (header_name_is(h, "host")) {
			have_host++;
		} else if (header_name_is(h, "connection")) {
			if (token_list_has(v, h->value_len, "close"))
				c->keep_alive = 0;
			else if (token_list_has(v, h->value_len, "keep-alive"))
				c->keep_alive = 1;
		} else if (header_name_is(h, "expect")) {
			if (h->value_len != 12 || strncasecmp(v, "100-continue", 12) != 0)
				return conn_error(c, 417, "expectation_failed", "only Expect: 100-continue is supported"), -1;
		}
		p = line_end + 2;
	}
	if (r->chunked && r->content_length >= 0)
		return conn_error(c, 400, "bad_request", "both Transfer-Encoding and Content-Length"), -1;
	if (r->chunked && r->minor == 0)
		return conn_error(c, 400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request"), -1;
	if (r->minor == 1 && have_host != 1)
		return conn_error(c, 400, "bad_request", "HTTP/1.1 needs exactly one Host header"), -1;
	if (!r->chunked && r->content_length < 0 && strcmp(r->method, "POST") == 0)
		return conn_error(c, 411, "length_required", "POST needs Content-Length or chunked encoding"), -1;
	return 0;
}

static void
dispatch(struct http_conn *c)
{
	struct http_server *srv = c->srv;

	if (c->body.len > 0)
		c->req.body = c->body.p;
	c->req.body_len = c->body.len;
	c->state = ST_BUSY;
	srv->nbusy++;
	/*
	 * Reading stays on while the application works (it shows a client
	 * that goes away); on_read stops it if a pipelining client sends more
	 * than one more request could hold.
	 */
	evtimer_del(c->timer);
	srv->on_request(&c->req, srv->arg);
}

/* Parse as much as the input holds; returns when waiting for more or busy. */
static void
conn_process(struct http_conn *c)
{
	struct http_server *srv = c->srv;
	struct evbuffer *in = bufferevent_get_input(c->bev);

	c->in_process = 1;
	while (c->state != ST_BUSY && c->state != ST_LINGER && !c->close_after) {
		size_t avail = evbuffer_get_length(in);
		struct evbuffer_ptr pos;

		if (c->state == ST_HEAD) {
			if (avail == 0)
				break;
			if (c->req.t0_ns == 0) {
				c->req.t0_ns = http_now_ns();
				timer_arm(c, srv->lim.request_timeout_ms);
			}
			pos = evbuffer_search(in, "\r\n\r\n", 4, NULL);
			if (pos.pos < 0) {
				if (avail > srv->lim.max_head)
					conn_error(c, 431, "headers_too_large", "request head too large");
				break;
			}
			if ((size_t)pos.pos + 4 > srv->lim.max_head) {
				conn_error(c, 431, "headers_too_large", "request head too large");
				break;
			}
			buf_reset(&c->head);
			if (buf_reserve(&c->head, (size_t)pos.pos + 4) < 0) {
				conn_error(c, 503, "overloaded", "out of memory");
				break;
			}
			evbuffer_remove(in, c->head.p, (size_t)pos.pos + 4);
			c->head.len = (size_t)pos.pos + 4;
			c->head.p[c->head.len] = '\0';
			if (parse_head(c) < 0)
				break;
			if (srv->on_head != NULL) {
				srv->on_head(&c->req, srv->arg);
				if (c->req.replied)
					break;
			}
			if (!c->req.chunked && c->req.content_length > (long long)srv->lim.max_body) {
				conn_error(c, 413, "body_too_large", "request body too large");
				break;
			}
			if (c->req.chunked || c->req.content_length > 0) {
				const struct header *ex = http_header(&c->req, "expect");
				if (ex != NULL && evbuffer_get_length(in) == 0)
					bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
			}
			if (c->req.chunked) {
				c->state = ST_CHUNK_SIZE;
			} else if (c->req.content_length > 0) {
				c->state = ST_BODY;
				c->remaining = c->req.content_length;
			} else {
				dispatch(c);
			}
		} else if (c->state == ST_BODY) {
			if ((long long)avail < c->remaining)
				break;
			if (buf_reserve(&c->body, (size_t)c->remaining) < 0) {
				conn_error(c, 503, "overloaded", "out of memory");
				break;
			}
			evbuffer_remove(in, c->body.p + c->body.len, (size_t)c->remaining);
			c->body.len += (size_t)c->remaining;
			c->body.p[c->body.len] = '\0';
			dispatch(c);
		} else if (c->state == ST_CHUNK_SIZE || c->state == ST_TRAILER) {
			char line[CHUNK_LINE_MAX + 1];
			size_t n;

			pos = evbuffer_search(in, "\r\n", 2, NULL);
			if (pos.pos < 0) {
				if (avail > CHUNK_LINE_MAX)
					conn_error(c, 400, "bad_request", "chunk line too long");
				break;
			}
			n = (size_t)pos.pos;
			if (n > CHUNK_LINE_MAX) {
				conn_error(c, 400, "bad_request", "chunk line too long");
				break;
			}
			evbuffer_remove(in, line, n);
			evbuffer_drain(in, 2);
			line[n] = '\0';
			if (c->state == ST_TRAILER) {
				c->head.len += n + 2;   /* trailers count against the head limit */
				if (c->head.len > srv->lim.max_head) {
					conn_error(c, 431, "headers_too_large", "trailers too large");
					break;
				}
				if (n == 0)
					dispatch(c);
				continue;
			}
			{
				long long size = 0;
				size_t i = 0;
				for (; i < n && i < 16; i++) {
					char ch = line[i];
					int d = ch >= '0' && ch <= '9' ? ch - '0' :
					    ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 :
					    ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
					if (d < 0)
						break;
					size = size * 16 + d;
				}
				if (i == 0 || i >= 16 || (i < n && line[i] != ';')) {
					conn_error(c, 400, "bad_request", "malformed chunk size");
					break;
				}
				if (size == 0) {
					c->state = ST_TRAILER;
				} else if (size > (long long)(srv->lim.max_body - c->body.len)) {
					conn_error(c, 413, "body_too_large", "request body too large");
					break;
				} else {
					c->remaining = size;
					c->state = ST_CHUNK_DATA;
				}
			}
		} else if (c->state == ST_CHUNK_DATA) {
			char crlf[2];

			if ((long long)avail < c->remaining + 2)
				break;
			if (buf_reserve(&c->body, (size_t)c->remaining) < 0) {
				conn_error(c, 503, "overloaded", "out of memory");
				break;
			}
			evbuffer_remove(in, c->body.p + c->body.len, (size_t)c->remaining);
			c->body.len += (size_t)c->remaining;
			c->body.p[c->body.len] = '\0';
			evbuffer_remove(in, crlf, 2);
			if (crlf[0] != '\r' || crlf[1] != '\n') {
				conn_error(c, 400, "bad_request", "chunk data not followed by CRLF");
				break;
			}
			c->state = ST_CHUNK_SIZE;
		}
	}
	c->in_process = 0;
	conn_maybe_finish(c);
}

/*
 * After the client's EOF, once no request is in progress (a partial one
 * can never complete), close as soon as the replies are written.
 */
static void
conn_maybe_finish(struct http_conn *c)
{
	if (!c->peer_eof || c->in_process || c->state == ST_BUSY || c->state == ST_LINGER)
		return;
	c->close_after = 1;
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_free(c);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;
	struct http_server *srv = c->srv;     /* conn_process() may free c */
	struct evbuffer *in = bufferevent_get_input(bev);

	if (c->state == ST_LINGER) {
		size_t n = evbuffer_get_length(in);
		c->lingered += n;
		evbuffer_drain(in, n);
		if (c->lingered > LINGER_BYTES)
			conn_free(c);
		return;
	}
	if (c->state == ST_BUSY) {
		if (evbuffer_get_length(in) > c->srv->lim.max_head + c->srv->lim.max_body)
			bufferevent_disable(bev, EV_READ);
		return;
	}
	conn_process(c);
	if (srv->after_read != NULL)
		srv->after_read(srv->arg);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct http_conn *c = arg;

	(void)bev;
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if (!(what & BEV_EVENT_ERROR) && c->state != ST_LINGER) {
		/*
		 * EOF only: the client sent all it will send (perhaps a
		 * half-close) but may still read. Answer what it sent, in
		 * order, then close.
		 */
		c->peer_eof = 1;
		conn_maybe_finish(c);
		return;
	}
	if (c->state == ST_BUSY) {
		/* The application still holds the request; free after its reply. */
		c->peer_gone = 1;
		c->close_after = 1;
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		return;
	}
	conn_free(c);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->state == ST_BUSY)
		return;
	if (c->state == ST_LINGER || c->close_after ||
	    (c->state == ST_HEAD && c->req.t0_ns == 0)) {
		conn_free(c);     /* idle keep-alive, or done lingering */
		return;
	}
	log_info("http request timed out", " after_ms=%d", c->srv->lim.request_timeout_ms);
	conn_error(c, 408, "request_timeout", "request not complete in time");
}

static void
conn_free(struct http_conn *c)
{
	struct http_server *srv = c->srv;

	if (c->state == ST_BUSY)
		srv->nbusy--;
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nconns--;
	event_free(c->timer);
	bufferevent_free(c->bev);
	buf_free(&c->head);
	buf_free(&c->body);
	free(c->hdrs);
	free(c);
	if (srv->paused && !srv->draining && srv->nconns < srv->lim.max_conns) {
		evconnlistener_enable(srv->lis);
		srv->paused = 0;
	}
}

static void
on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct http_server *srv = arg;
	struct http_conn *c;
	int one = 1;

	(void)lis;
	(void)sa;
	(void)salen;
	c = calloc(1, sizeof *c);
	if (c == NULL) {
		evutil_closesocket(fd);
		return;
	}
	c->srv = srv;
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(srv->base, on_timer, c);
	if (c->bev == NULL || c->timer == NULL) {
		if (c->bev)
			bufferevent_free(c->bev);
		else
			evutil_closesocket(fd);
		if (c->timer)
			event_free(c->timer);
		free(c);
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	buf_init(&c->head, 0);
	buf_init(&c->body, 0);
	request_reset(c);
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->nconns++;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_enable(c->bev, EV_READ);
	timer_arm(c, srv->lim.idle_timeout_ms);
	if (srv->nconns >= srv->lim.max_conns) {
		evconnlistener_disable(srv->lis);
		srv->paused = 1;
	}
}

struct http_server *
http_server_new(struct event_base *base, const struct http_limits *lim,
    http_fn on_head, http_fn on_request, void *arg)
{
	struct http_server *srv = calloc(1, sizeof *srv);

	if (srv == NULL)
		return NULL;
	srv->base = base;
	srv->lim = *lim;
	if (srv->lim.max_headers > HTTP_MAX_HEADERS_LIMIT)
		srv->lim.max_headers = HTTP_MAX_HEADERS_LIMIT;
	srv->on_head = on_head;
	srv->on_request = on_request;
	srv->arg = arg;
	return srv;
}

void
http_server_after_read(struct http_server *srv, void (*fn)(void *arg))
{
	srv->after_read = fn;
}

int
http_server_listen(struct http_server *srv, const char *host_port)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;

	if (evutil_parse_sockaddr_port(host_port, (struct sockaddr *)&ss, &len) < 0) {
		errno = EINVAL;
		return -1;
	}
	srv->lis = evconnlistener_new_bind(srv->base, on_accept, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
	    (struct sockaddr *)&ss, len);
	return srv->lis == NULL ? -1 : 0;
}

void
http_server_drain(struct http_server *srv)
{
	struct http_conn *c, *next;

	srv->draining = 1;
	if (srv->lis)
		evconnlistener_disable(srv->lis);
	for (c = srv->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == ST_BUSY)
			c->close_after = 1;
		else if (c->state == ST_HEAD && c->req.t0_ns == 0)
			conn_free(c);
	}
}

int
http_server_connections(const struct http_server *srv)
{
	return srv->nconns;
}

int
http_server_busy(const struct http_server *srv)
{
	return srv->nbusy;
}

void
http_server_free(struct http_server *srv)
{
	if (srv == NULL)
		return;
	while (srv->conns != NULL)
		conn_free(srv->conns);
	if (srv->lis)
		evconnlistener_free(srv->lis);
	free(srv);
}
