/*
 * webhook.h: the project rules that turn an HTTP request into the fields of
 * an inbox envelope (DESIGN.md, "HTTP API"): source names, role slugs, the
 * fallback order for event_type / dedupe_key / source_identifier, and the
 * normalised, redacted header object.
 */
#ifndef INFONCHAT_WEBHOOK_H
#define INFONCHAT_WEBHOOK_H

#include <stddef.h>

#include "buf.h"
#include "json.h"

#define SOURCE_MAX 64

/*
 * Lower-case s[0..n) into out and accept it when it matches
 * [a-z0-9][a-z0-9_-]{0,63}. Returns 0, or -1 (out then undefined).
 */
int source_normalize(const char *s, size_t n, char out[SOURCE_MAX + 1]);

/*
 * Append the role slug of an event type to out: ASCII lower-cased, every run
 * of bytes outside [a-z0-9] replaced by one '_', leading and trailing '_'
 * trimmed, "received" when nothing is left. Returns 0 or -1 (out's ceiling).
 */
int role_slug(struct buf *out, const char *event_type, size_t n);

/*
 * What the request offers for the three derived fields. Query values and
 * header values are NUL-free C strings, NULL when absent (an empty string
 * also counts as absent). payload is the checked top-level object.
 */
struct field_inputs {
	const char *query_event_type;
	const char *query_source_identifier;
	const char *query_dedupe_key;
	const char *header_webhook_id;
	const char *header_request_id;
	/* looked at by the provider profiles (see fields_resolve()) */
	const char *header_std_webhook_id;      /* webhook-id; the caller sets it only
	                                         * for Standard Webhooks senders */
	const char *header_github_event;        /* X-GitHub-Event */
	const char *header_github_delivery;     /* X-GitHub-Delivery */
	const char *header_shopify_topic;       /* X-Shopify-Topic */
	const char *header_shopify_webhook_id;  /* X-Shopify-Webhook-Id */
	const struct json_span *payload;
	const char *source;          /* normalised source name */
	const char *workspace_id;    /* canonical UUID */
};

/* The derived fields; each buf is reset and filled by fields_resolve(). */
struct fields {
	struct buf event_type;
	struct buf dedupe_key;
	int has_dedupe_key;          /* 0: dedupe_key is null */
	struct buf source_identifier;
};

void fields_init(struct fields *f);
void fields_free(struct fields *f);

/*
 * Apply the explicit query values, then the provider profile of the source,
 * then the generic fallback rules:
 *   event_type:        query;
 *                      github: X-GitHub-Event, plus "." and the payload
 *                      "action" when that counts; shopify: X-Shopify-Topic;
 *                      then payload "event", "type", "action", "received"
 *   dedupe_key:        query;
 *                      github: X-GitHub-Delivery; shopify:
 *                      X-Shopify-Webhook-Id; any source: webhook-id;
 *                      stripe: payload "id";
 *                      then header x-webhook-id, x-request-id, null
 *   source_identifier: query, dedupe key, payload "id", "{source}:{workspace_id}"
 * A payload value counts only when it is a non-empty string that decodes
 * without \u0000 or an unpaired surrogate; for "id" a number also counts, as
 * its token text. When a key repeats, its last occurrence is the one that
 * counts (PostgreSQL's json operators do the same). Returns 0 or -1 (memory).
 */
int fields_resolve(struct fields *f, const struct field_inputs *in);

/* One request header as received: name and value are not NUL-terminated. */
struct header {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

/*
 * Append the envelope's "headers" object: names lower-cased; repeated
 * headers joined with ", " in the order received, at the position of the
 * first; values of authorization, proxy-authorization and cookie replaced by
 * "[redacted]". Returns 0 or -1 (out's ceiling).
 */
int headers_json(struct buf *out, const struct header *h, size_t n);

/* Case-insensitive ASCII comparison of a header name with a lower-case name. */
int header_name_is(const struct header *h, const char *lower);


/*
 * The query parameters of the webhook endpoint, percent-decoded ('+' is a
 * space), NUL-terminated, NULL when absent or empty. Unknown parameters are
 * ignored.
 */
struct webhook_query {
	const char *source;
	const char *event_type;
	const char *source_identifier;
	const char *dedupe_key;
};

/*
 * Parse q[0..n) (may be NULL). Decoded strings live in *arena (reset first).
 * Returns 0, or -1 with *msg set: a malformed %-escape, a value with a NUL or
 * invalid UTF-8, or a known parameter given twice.
 */
int webhook_query_parse(const char *q, size_t n, struct webhook_query *out,
    struct buf *arena, const char **msg);

#endif
