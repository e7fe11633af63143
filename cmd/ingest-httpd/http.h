/*
 * http.h: a small, strict HTTP/1.1 server on libevent bufferevents.
 *
 * Why not evhttp: libevent 2.1's evhttp answers its own framing errors with
 * HTML, lets smuggling-prone framing through (see PITFALLS), has only an
 * idle timeout and no connection cap. Here the framing is ours and strict:
 * every request head is checked before any of its body is read, bodies are
 * bounded, every request has an absolute deadline, and every error is a
 * JSON reply followed by a lingering close so the client reads it.
 *
 * One request per connection is in progress at a time; pipelined requests
 * wait in the input buffer and are answered in order. A request that was
 * handed to the application stays valid until http_reply() is called for
 * it, whatever the client does meanwhile.
 */
#ifndef INGEST_HTTP_H
#define INGEST_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "webhook.h"

#define HTTP_MAX_HEADERS_LIMIT 256

struct http_limits {
	size_t max_head;          /* request line + headers, bytes */
	size_t max_headers;       /* header lines (<= HTTP_MAX_HEADERS_LIMIT) */
	size_t max_body;          /* decoded body, bytes */
	int request_timeout_ms;   /* first byte to complete request */
	int idle_timeout_ms;      /* keep-alive connection without a request */
	int max_conns;            /* accepted connections at once */
};

struct http_conn;

struct http_request {
	struct http_conn *conn;
	const char *method;       /* NUL-terminated */
	const char *path;         /* raw (not decoded), NUL-terminated */
	size_t path_len;
	const char *query;        /* raw text after '?', or NULL */
	size_t query_len;
	int minor;                /* HTTP/1.minor */
	struct header *headers;   /* nheaders of them */
	size_t nheaders;
	long long content_length; /* -1 when absent */
	int chunked;
	const char *body;         /* complete body (empty string when none) */
	size_t body_len;
	uint64_t t0_ns;           /* monotonic time of the request's first byte */
	int replied;
	void *user;               /* the application's, untouched here */
};

/*
 * on_head runs when a request's head is complete and valid, before its body
 * is read; it may answer at once with http_reply() (the connection then
 * closes, since its body was never read). on_request runs when the whole
 * request is in; it must answer, now or later, with http_reply().
 */
typedef void (*http_fn)(struct http_request *req, void *arg);

struct http_server;

struct http_server *http_server_new(struct event_base *base,
    const struct http_limits *lim, http_fn on_head, http_fn on_request,
    void *arg);
/*
 * fn(arg) runs after each read of a connection's input has been processed
 * (no request is being processed then): where work queued by the requests
 * of a long loop turn can be passed on before the turn ends.
 */
void http_server_after_read(struct http_server *srv, void (*fn)(void *arg));
/* Listen on "HOST:PORT" ("[::1]:8080" for IPv6). Returns 0, or -1 with errno. */
int http_server_listen(struct http_server *srv, const char *host_port);
/* Stop accepting, close idle connections; busy ones close after their reply. */
void http_server_drain(struct http_server *srv);
/* Connections open now, and how many of them have a request in progress. */
int http_server_connections(const struct http_server *srv);
int http_server_busy(const struct http_server *srv);
void http_server_free(struct http_server *srv);

/*
 * The application is done with req->body (it has copied what it needs):
 * release its memory now rather than when the reply is sent, so requests
 * that wait long (for inbox-writer) hold only their head. req->body becomes
 * the empty string.
 */
void http_request_drop_body(struct http_request *req);

/*
 * Answer req: status, Content-Type, extra header lines (each ending in
 * "\r\n", may be NULL) and a body. A HEAD request gets no body.
 */
void http_reply(struct http_request *req, int status, const char *content_type,
    const char *extra_headers, const char *body, size_t len);

/* Answer with {"error":code,"message":message} as application/json. */
void http_reply_error(struct http_request *req, int status, const char *code,
    const char *message, const char *extra_headers);

/* Find a header (lower-case name); NULL when absent. */
const struct header *http_header(const struct http_request *req, const char *lower);

uint64_t http_now_ns(void);

#endif
