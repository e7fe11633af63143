#include "ingest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "envelope.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "signature.h"
#include "uuid.h"

#define WEBHOOK_PREFIX "/api/v1/webhooks/generic/"
#define WEBHOOK_PREFIX_LEN (sizeof WEBHOOK_PREFIX - 1)

enum route { R_NONE, R_WEBHOOK, R_HEALTHZ, R_READYZ, R_METRICS };

/* Per-request state kept while the writer is asked. */
struct pending {
	char id[UUID_LEN + 1];
	char workspace_id[UUID_LEN + 1];
};

void
ingest_init(struct ingest *g, size_t max_body)
{
	memset(g, 0, sizeof *g);
	g->max_body = max_body;
	g->out_fd = -1;
	buf_init(&g->query_arena, 64 * 1024);
	buf_init(&g->line, 0);
	buf_init(&g->headers, 0);
	buf_init(&g->role, 0);
	fields_init(&g->fields);
}

void
ingest_free(struct ingest *g)
{
	buf_free(&g->query_arena);
	buf_free(&g->line);
	buf_free(&g->headers);
	buf_free(&g->role);
	fields_free(&g->fields);
}

static enum route
route_of(const struct http_request *req)
{
	if (req->path_len > WEBHOOK_PREFIX_LEN &&
	    memcmp(req->path, WEBHOOK_PREFIX, WEBHOOK_PREFIX_LEN) == 0)
		return R_WEBHOOK;
	if (strcmp(req->path, "/healthz") == 0)
		return R_HEALTHZ;
	if (strcmp(req->path, "/readyz") == 0)
		return R_READYZ;
	if (strcmp(req->path, "/metrics") == 0)
		return R_METRICS;
	return R_NONE;
}

/* Answer an error; id is the envelope's when one was made, else NULL. */
static void
fail_event(struct http_request *req, const char *id, int status, const char *code,
    const char *message, const char *extra)
{
	metrics_request(status, code);
	if (req->t0_ns && route_of(req) == R_WEBHOOK)
		metrics_ack_latency(http_now_ns() - req->t0_ns);
	if (id != NULL)
		log_info("event refused", " id=%s status=%d error=%s err=%s", id, status,
		    code, log_q(message));
	else
		log_info("request refused", " status=%d error=%s path=%s", status, code,
		    log_q(req->path));
	http_reply_error(req, status, code, message, extra);
}

static void
fail(struct http_request *req, int status, const char *code, const char *message,
    const char *extra)
{
	fail_event(req, NULL, status, code, message, extra);
}

/*
 * The checks that need no body: path, method, workspace_id form, size.
 * Answers and returns -1 when one fails.
 */
static int
check_head(struct http_request *req, struct ingest *g, char ws[UUID_LEN + 1])
{
	enum route r = route_of(req);
	int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;

	switch (r) {
	case R_NONE:
		fail(req, 404, "not_found", "no such endpoint", NULL);
		return -1;
	case R_HEALTHZ: case R_READYZ: case R_METRICS:
		if (!get) {
			fail(req, 405, "method_not_allowed", "use GET", "Allow: GET, HEAD\r\n");
			return -1;
		}
		return 0;
	case R_WEBHOOK:
		break;
	}
	if (strcmp(req->method, "POST") != 0) {
		fail(req, 405, "method_not_allowed", "use POST", "Allow: POST\r\n");
		return -1;
	}
	if (uuid_canonical(req->path + WEBHOOK_PREFIX_LEN,
	    req->path_len - WEBHOOK_PREFIX_LEN, ws) < 0) {
		fail(req, 400, "invalid_workspace_id",
		    "workspace_id must be a UUID (8-4-4-4-12 hex)", NULL);
		return -1;
	}
	if (!req->chunked && req->content_length > (long long)g->max_body) {
		fail(req, 413, "body_too_large", "request body larger than --max-body", NULL);
		return -1;
	}
	return 0;
}

void
ingest_on_head(struct http_request *req, void *arg)
{
	char ws[UUID_LEN + 1];

	(void)check_head(req, arg, ws);
}

static void
reply_json(struct http_request *req, int status, const char *body)
{
	metrics_request(status, NULL);
	http_reply(req, status, "application/json", NULL, body, strlen(body));
}

static void
serve_health(struct http_request *req, struct ingest *g, enum route r)
{
	struct buf b = BUF_INIT;
	int ready = (g->ack == NULL || ack_writer_ready(g->ack)) &&
	    (g->secrets == NULL || secrets_loaded(g->secrets));

	switch (r) {
	case R_HEALTHZ:
		reply_json(req, 200, "{\"status\":\"ok\"}");
		break;
	case R_READYZ:
		if (ready)
			reply_json(req, 200, "{\"ready\":true}");
		else
			fail(req, 503, "not_ready", g->secrets != NULL && !secrets_loaded(g->secrets) ?
			    "webhook secrets not loaded yet" : "inbox-writer is not answering",
			    "Retry-After: 1\r\n");
		break;
	default:
		metrics_render(&b, g->ack ? (long)ack_pending(g->ack) : 0,
		    http_server_connections(g->http), ready);
		secrets_metrics(g->secrets, &b);
		ratelimit_metrics(g->rl, &b);
		metrics_request(200, NULL);
		http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL,
		    b.p ? b.p : "", b.len);
		buf_free(&b);
		break;
	}
}

/* A header value that will be stored as text must be valid UTF-8. */
static int
text_header(struct http_request *req, const char *name, const char **out)
{
	const struct header *h = http_header(req, name);

	*out = NULL;
	if (h == NULL)
		return 0;
	if (!utf8_valid(h->value, h->value_len)) {
		char msg[96];
		snprintf(msg, sizeof msg, "header %s is not valid UTF-8", name);
		fail(req, 400, "invalid_header", msg, NULL);
		return -1;
	}
	*out = h->value;
	return 0;
}

static const char *
header_value(const struct http_request *req, const char *name)
{
	const struct header *h = http_header(req, name);

	return h != NULL ? h->value : NULL;
}

/*
 * Signature verification (DESIGN.md): the raw body as received against every
 * secret of (workspace, source). Answers 401 (or 503 before the first load of
 * the secrets) and returns -1 when the request must not go on. *std is set
 * when a Standard Webhooks secret verified it (its profile then applies).
 */
static int
check_signature(struct http_request *req, struct ingest *g, const char *ws,
    const char *source, int *std)
{
	const struct secret_key *keys;
	struct sig_request sr;
	enum sig_result worst = SIG_OK;
	size_t n;
	int require;

	if (g->secrets == NULL)
		return 0;
	if (!secrets_loaded(g->secrets)) {
		fail(req, 503, "unavailable", "webhook secrets not loaded yet", "Retry-After: 1\r\n");
		return -1;
	}
	require = secrets_lookup(g->secrets, ws, source, &keys, &n);
	if (n == 0) {
		if (!require)
			return 0;
		fail(req, 401, "unsigned_source",
		    "this workspace requires signatures and the source has no secret", NULL);
		return -1;
	}
	memset(&sr, 0, sizeof sr);
	sr.body = req->body;
	sr.body_len = req->body_len;
	sr.webhook_id = header_value(req, "webhook-id");
	sr.webhook_timestamp = header_value(req, "webhook-timestamp");
	sr.webhook_signature = header_value(req, "webhook-signature");
	sr.stripe_signature = header_value(req, "stripe-signature");
	sr.hub_signature_256 = header_value(req, "x-hub-signature-256");
	sr.slack_signature = header_value(req, "x-slack-signature");
	sr.slack_timestamp = header_value(req, "x-slack-request-timestamp");
	sr.x_signature = header_value(req, "x-signature");
	sr.now = (long long)time(NULL);
	for (size_t i = 0; i < n; i++) {
		enum sig_result r = sig_verify(keys[i].scheme, keys[i].valid ? keys[i].key : NULL,
		    keys[i].valid ? keys[i].key_len : 0, &sr);

		if (r == SIG_OK) {
			*std = keys[i].scheme == SIG_STANDARD_WEBHOOKS;
			return 0;
		}
		if (r > worst)
			worst = r;
	}
	fail(req, 401, sig_result_code(worst),
	    worst == SIG_MISSING ? "the request carries no signature for this source" :
	    worst == SIG_STALE ? "the signature's timestamp is more than 300 s away" :
	    "no signature matches a secret of this source", NULL);
	return -1;
}

struct slack_keys {
	struct json_span type, challenge;
	int has_type, has_challenge;
};

static int
collect_slack(const struct json_span *key, const struct json_span *value, void *arg)
{
	struct slack_keys *k = arg;

	if (json_string_equals(key, "type")) {
		k->type = *value;
		k->has_type = 1;
	} else if (json_string_equals(key, "challenge")) {
		k->challenge = *value;
		k->has_challenge = 1;
	}
	return 0;
}

/*
 * Slack's url_verification handshake: answer 200 {"challenge":...} and store
 * nothing. Returns 1 when answered, else 0.
 */
static int
slack_challenge(struct http_request *req, struct ingest *g, const struct json_span *payload)
{
	struct slack_keys k;

	memset(&k, 0, sizeof k);
	json_object_each(payload, collect_slack, &k);
	if (!k.has_type || k.type.type != JSON_T_STRING ||
	    !json_string_equals(&k.type, "url_verification") ||
	    !k.has_challenge || k.challenge.type != JSON_T_STRING)
		return 0;
	/* The token is checked JSON text: splice it as sent. */
	buf_reset(&g->line);
	if (buf_puts(&g->line, "{\"challenge\":") < 0 ||
	    buf_append(&g->line, k.challenge.start, k.challenge.len) < 0 ||
	    buf_putc(&g->line, '}') < 0) {
		fail(req, 503, "overloaded", "out of memory", "Retry-After: 1\r\n");
		return 1;
	}
	log_info("slack url_verification answered", " path=%s", log_q(req->path));
	metrics_request(200, NULL);
	http_reply(req, 200, "application/json", NULL, g->line.p, g->line.len);
	return 1;
}

static void
accept_webhook(struct http_request *req, struct ingest *g, const char *ws)
{
	struct webhook_query q;
	struct field_inputs in;
	struct json_span payload;
	struct json_error jerr;
	struct envelope e;
	char source[SOURCE_MAX + 1], kind[SOURCE_MAX + 16], received[TIMESTAMP_LEN + 1];
	int std_sender = 0;
	const char *msg;
	enum json_status js;
	struct pending *p;

	if (webhook_query_parse(req->query, req->query_len, &q, &g->query_arena, &msg) < 0) {
		fail(req, 400, "invalid_query", msg, NULL);
		return;
	}
	if (q.source == NULL) {
		strcpy(source, "generic");
	} else if (source_normalize(q.source, strlen(q.source), source) < 0) {
		fail(req, 400, "invalid_source",
		    "source must match [a-z0-9][a-z0-9_-]{0,63}", NULL);
		return;
	}
	/* Signature verification: before the body is looked at. */
	if (check_signature(req, g, ws, source, &std_sender) < 0)
		return;
	js = json_check_object(req->body, req->body_len, PAYLOAD_MAX_DEPTH, &payload, &jerr);
	if (js != JSON_OK) {
		char m[160];
		snprintf(m, sizeof m, "body is not a JSON object: %s at byte %zu",
		    js == JSON_NOT_OBJECT ? "not an object" : jerr.what, jerr.offset);
		fail(req, 400, json_status_code(js), m, NULL);
		return;
	}
	if (strcmp(source, "slack") == 0 && slack_challenge(req, g, &payload))
		return;
	memset(&in, 0, sizeof in);
	in.query_event_type = q.event_type;
	in.query_source_identifier = q.source_identifier;
	in.query_dedupe_key = q.dedupe_key;
	if (text_header(req, "x-webhook-id", &in.header_webhook_id) < 0 ||
	    text_header(req, "x-request-id", &in.header_request_id) < 0)
		return;
	/*
	 * The Standard Webhooks profile (dedupe key from webhook-id) is for
	 * senders known to be such: source standard-webhooks, or a source whose
	 * Standard Webhooks secret verified this request. generic and unknown
	 * sources keep the generic rules exactly.
	 */
	if ((std_sender || strcmp(source, "standard-webhooks") == 0) &&
	    text_header(req, "webhook-id", &in.header_std_webhook_id) < 0)
		return;
	if (strcmp(source, "github") == 0 &&
	    (text_header(req, "x-github-event", &in.header_github_event) < 0 ||
	    text_header(req, "x-github-delivery", &in.header_github_delivery) < 0))
		return;
	if (strcmp(source, "shopify") == 0 &&
	    (text_header(req, "x-shopify-topic", &in.header_shopify_topic) < 0 ||
	    text_header(req, "x-shopify-webhook-id", &in.header_shopify_webhook_id) < 0))
		return;
	in.payload = &payload;
	in.source = source;
	in.workspace_id = ws;
	buf_reset(&g->role);
	buf_reset(&g->headers);
	buf_reset(&g->line);
	snprintf(kind, sizeof kind, "webhook.%s", source);
	if (fields_resolve(&g->fields, &in) < 0 ||
	    buf_printf(&g->role, "%s.", kind) < 0 ||
	    role_slug(&g->role, g->fields.event_type.p, g->fields.event_type.len) < 0 ||
	    headers_json(&g->headers, req->headers, req->nheaders) < 0) {
		fail(req, 503, "overloaded", "out of memory", "Retry-After: 1\r\n");
		return;
	}
	memset(&e, 0, sizeof e);
	if (uuid_v7(e.id) < 0) {
		fail(req, 503, "overloaded", "no randomness", "Retry-After: 1\r\n");
		return;
	}
	memcpy(e.workspace_id, ws, UUID_LEN + 1);
	timestamp_now(received);
	e.source = source;
	e.source_kind = kind;
	e.event_type = g->fields.event_type.p;
	e.role = g->role.p;
	e.dedupe_key = g->fields.has_dedupe_key ? g->fields.dedupe_key.p : NULL;
	e.source_identifier = g->fields.source_identifier.p;
	e.received_at = received;
	e.headers = g->headers.p;
	e.headers_len = g->headers.len;
	e.payload = payload.start;
	e.payload_len = payload.len;
	if (envelope_build(&g->line, &e) < 0) {
		fail(req, 503, "overloaded", "out of memory", "Retry-After: 1\r\n");
		return;
	}

	if (g->out_fd >= 0) {
		/* Debug mode: written to stdout is all the durability there is. */
		size_t off = 0;
		buf_putc(&g->line, '\n');
		while (off < g->line.len) {
			ssize_t w = write(g->out_fd, g->line.p + off, g->line.len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				fail(req, 503, "unavailable", "cannot write to stdout", "Retry-After: 1\r\n");
				return;
			}
			off += (size_t)w;
		}
		char body[96];
		snprintf(body, sizeof body, "{\"accepted\":true,\"event_id\":\"%s\"}", e.id);
		log_info("event written to stdout", " id=%s workspace_id=%s role=%s",
		    e.id, ws, log_q(e.role));
		metrics_ack_latency(http_now_ns() - req->t0_ns);
		reply_json(req, 202, body);
		return;
	}

	p = malloc(sizeof *p);
	if (p == NULL) {
		fail(req, 503, "overloaded", "out of memory", "Retry-After: 1\r\n");
		return;
	}
	memcpy(p->id, e.id, sizeof p->id);
	memcpy(p->workspace_id, ws, sizeof p->workspace_id);
	http_request_drop_body(req);    /* in the envelope now */
	/* The request keeps p until the writer answers. */
	if (ack_submit(g->ack, g->line.p, g->line.len, req) < 0) {
		int full = errno == EAGAIN;     /* read before free() may change it */

		free(p);
		if (full)
			fail(req, 503, "unavailable", "--max-pending requests already wait for inbox-writer",
			    "Retry-After: 1\r\n");
		else
			fail(req, 503, "overloaded", "out of memory", "Retry-After: 1\r\n");
		return;
	}
	req->user = p;
	log_debug("event sent to writer", " id=%s workspace_id=%s", e.id, ws);
}

void
ingest_after_read(void *arg)
{
	struct ingest *g = arg;

	if (g->ack != NULL)
		ack_flush_some(g->ack);
}

void
ingest_on_request(struct http_request *req, void *arg)
{
	struct ingest *g = arg;
	char ws[UUID_LEN + 1];
	enum route r;

	/*
	 * ingest_on_head() has passed path, method, workspace_id form and the
	 * announced size; the HTTP layer bounds a chunked body by the same
	 * --max-body. What is left is to take the workspace id.
	 */
	r = route_of(req);
	if (r != R_WEBHOOK) {
		serve_health(req, g, r);
		return;
	}
	if (uuid_canonical(req->path + WEBHOOK_PREFIX_LEN, req->path_len - WEBHOOK_PREFIX_LEN, ws) < 0)
		abort();    /* on_head refused it: a request here is a bug */
	if (g->rl != NULL) {
		long wait = ratelimit_take(g->rl, ws, http_now_ns());

		if (wait > 0) {
			char extra[48];

			snprintf(extra, sizeof extra, "Retry-After: %ld\r\n", wait);
			fail(req, 429, "rate_limited", "this workspace sends faster than --rate-limit",
			    extra);
			return;
		}
	}
	accept_webhook(req, g, ws);
}

void
ingest_on_ack(void *ctx, enum ack_status st, const char *event_id,
    const char *message, void *arg)
{
	struct http_request *req = ctx;
	struct pending *p = req->user;
	char body[128];

	(void)arg;
	/*
	 * Take p off req now: once answered, req is reset and may already
	 * carry the next pipelined request of the connection (and its own
	 * pending state) when the reply below returns.
	 */
	req->user = NULL;
	switch (st) {
	case ACK_ACCEPTED:
	case ACK_DUPLICATE:
		if (event_id == NULL || strlen(event_id) != UUID_LEN) {
			fail_event(req, p->id, 503, "unavailable", "malformed writer reply", "Retry-After: 1\r\n");
			break;
		}
		snprintf(body, sizeof body, "{\"accepted\":%s,\"event_id\":\"%s\"}",
		    st == ACK_ACCEPTED ? "true" : "false", event_id);
		if (st == ACK_ACCEPTED)
			log_info("event accepted", " id=%s workspace_id=%s status=202 ms=%.3f",
			    event_id, p->workspace_id, (double)(http_now_ns() - req->t0_ns) / 1e6);
		else
			log_info("event duplicate", " id=%s original=%s workspace_id=%s status=202 ms=%.3f",
			    p->id, event_id, p->workspace_id, (double)(http_now_ns() - req->t0_ns) / 1e6);
		metrics_ack_latency(http_now_ns() - req->t0_ns);
		reply_json(req, 202, body);
		break;
	case ACK_UNKNOWN_WORKSPACE:
		fail_event(req, p->id, 404, "workspace_not_found", "no such workspace", NULL);
		break;
	case ACK_REJECTED:
		fail_event(req, p->id, 400, "rejected", message, NULL);
		break;
	case ACK_TIMEOUT:
		fail_event(req, p->id, 503, "unavailable", message, "Retry-After: 1\r\n");
		break;
	}
	free(p);
}
