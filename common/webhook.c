#include "webhook.h"

#include <string.h>
#include <strings.h>

static char
ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

int
source_normalize(const char *s, size_t n, char out[SOURCE_MAX + 1])
{
	if (n == 0 || n > SOURCE_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = ascii_lower(s[i]);
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '_' && c != '-')))
			return -1;
		out[i] = c;
	}
	out[n] = '\0';
	return 0;
}

int
role_slug(struct buf *out, const char *s, size_t n)
{
	size_t start = out->len;
	int pending_sep = 0;

	for (size_t i = 0; i < n; i++) {
		char c = ascii_lower(s[i]);

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			if (pending_sep && out->len > start && buf_putc(out, '_') < 0)
				return -1;
			pending_sep = 0;
			if (buf_putc(out, c) < 0)
				return -1;
		} else {
			pending_sep = 1;
		}
	}
	if (out->len == start)
		return buf_puts(out, "received");
	return 0;
}

void
fields_init(struct fields *f)
{
	buf_init(&f->event_type, 0);
	buf_init(&f->dedupe_key, 0);
	buf_init(&f->source_identifier, 0);
	f->has_dedupe_key = 0;
}

void
fields_free(struct fields *f)
{
	buf_free(&f->event_type);
	buf_free(&f->dedupe_key);
	buf_free(&f->source_identifier);
}

/* The last occurrence of each payload key the fallbacks look at. */
struct payload_keys {
	struct json_span event, type, action, id;
	int has_event, has_type, has_action, has_id;
};

static int
collect_key(const struct json_span *key, const struct json_span *value, void *arg)
{
	struct payload_keys *k = arg;

	if (json_string_equals(key, "event")) {
		k->event = *value;
		k->has_event = 1;
	} else if (json_string_equals(key, "type")) {
		k->type = *value;
		k->has_type = 1;
	} else if (json_string_equals(key, "action")) {
		k->action = *value;
		k->has_action = 1;
	} else if (json_string_equals(key, "id")) {
		k->id = *value;
		k->has_id = 1;
	}
	return 0;
}

/*
 * Decode a payload value into out when it counts as a text value: 1 when it
 * does, 0 when it does not, -1 on memory failure.
 */
static int
payload_text(const struct json_span *v, int number_ok, struct buf *out)
{
	int flags;

	buf_reset(out);
	if (v->type == JSON_T_NUMBER && number_ok)
		return buf_append(out, v->start, v->len) < 0 ? -1 : 1;
	if (v->type != JSON_T_STRING)
		return 0;
	flags = json_string_decode(v, out);
	if (flags < 0)
		return -1;
	if (flags != 0 || out->len == 0) {
		buf_reset(out);
		return 0;
	}
	return 1;
}

static int
present(const char *s)
{
	return s != NULL && *s != '\0';
}

static int
source_is(const struct field_inputs *in, const char *name)
{
	return in->source != NULL && strcmp(in->source, name) == 0;
}

/* event_type from a provider profile: 1 when set, 0 when the profile has
 * nothing, -1 on memory failure. f->source_identifier serves as scratch. */
static int
profile_event_type(struct fields *f, const struct field_inputs *in,
    const struct payload_keys *k)
{
	int r;

	if (source_is(in, "github") && present(in->header_github_event)) {
		if (buf_puts(&f->event_type, in->header_github_event) < 0)
			return -1;
		r = k->has_action ? payload_text(&k->action, 0, &f->source_identifier) : 0;
		if (r < 0)
			return -1;
		if (r == 1 && (buf_putc(&f->event_type, '.') < 0 ||
		    buf_append(&f->event_type, f->source_identifier.p, f->source_identifier.len) < 0))
			return -1;
		buf_reset(&f->source_identifier);
		return 1;
	}
	if (source_is(in, "shopify") && present(in->header_shopify_topic))
		return buf_puts(&f->event_type, in->header_shopify_topic) < 0 ? -1 : 1;
	return 0;
}

/* dedupe_key from a provider profile: 1, 0 or -1 as above. */
static int
profile_dedupe_key(struct fields *f, const struct field_inputs *in,
    const struct payload_keys *k)
{
	const char *h = NULL;

	if (source_is(in, "github") && present(in->header_github_delivery))
		h = in->header_github_delivery;
	else if (source_is(in, "shopify") && present(in->header_shopify_webhook_id))
		h = in->header_shopify_webhook_id;
	else if (present(in->header_std_webhook_id))
		h = in->header_std_webhook_id;
	if (h != NULL)
		return buf_puts(&f->dedupe_key, h) < 0 ? -1 : 1;
	if (source_is(in, "stripe") && k->has_id)
		return payload_text(&k->id, 1, &f->dedupe_key);
	return 0;
}

int
fields_resolve(struct fields *f, const struct field_inputs *in)
{
	struct payload_keys k;
	int r;

	memset(&k, 0, sizeof k);
	buf_reset(&f->event_type);
	buf_reset(&f->dedupe_key);
	buf_reset(&f->source_identifier);
	f->has_dedupe_key = 0;
	if (in->payload != NULL)
		json_object_each(in->payload, collect_key, &k);

	/* event_type */
	r = 0;
	if (present(in->query_event_type))
		r = buf_puts(&f->event_type, in->query_event_type) < 0 ? -1 : 1;
	if (r == 0)
		r = profile_event_type(f, in, &k);
	if (r == 0 && k.has_event)
		r = payload_text(&k.event, 0, &f->event_type);
	if (r == 0 && k.has_type)
		r = payload_text(&k.type, 0, &f->event_type);
	if (r == 0 && k.has_action)
		r = payload_text(&k.action, 0, &f->event_type);
	if (r == 0)
		r = buf_puts(&f->event_type, "received") < 0 ? -1 : 1;
	if (r < 0)
		return -1;

	/* dedupe_key */
	r = 0;
	if (present(in->query_dedupe_key))
		r = buf_puts(&f->dedupe_key, in->query_dedupe_key) < 0 ? -1 : 1;
	if (r == 0)
		r = profile_dedupe_key(f, in, &k);
	if (r == 0 && present(in->header_webhook_id))
		r = buf_puts(&f->dedupe_key, in->header_webhook_id) < 0 ? -1 : 1;
	if (r == 0 && present(in->header_request_id))
		r = buf_puts(&f->dedupe_key, in->header_request_id) < 0 ? -1 : 1;
	if (r < 0)
		return -1;
	f->has_dedupe_key = (r == 1);

	/* source_identifier */
	r = 0;
	if (present(in->query_source_identifier))
		r = buf_puts(&f->source_identifier, in->query_source_identifier) < 0 ? -1 : 1;
	else if (f->has_dedupe_key)
		r = buf_append(&f->source_identifier, f->dedupe_key.p, f->dedupe_key.len) < 0 ? -1 : 1;
	if (r == 0 && k.has_id)
		r = payload_text(&k.id, 1, &f->source_identifier);
	if (r == 0)
		r = buf_printf(&f->source_identifier, "%s:%s", in->source, in->workspace_id) < 0 ? -1 : 1;
	return r < 0 ? -1 : 0;
}

int
header_name_is(const struct header *h, const char *lower)
{
	size_t n = strlen(lower);

	return h->name_len == n && strncasecmp(h->name, lower, n) == 0;
}

static int
is_redacted(const struct header *h)
{
	return header_name_is(h, "authorization") ||
	    header_name_is(h, "proxy-authorization") ||
	    header_name_is(h, "cookie");
}

static int
same_name(const struct header *a, const struct header *b)
{
	return a->name_len == b->name_len &&
	    strncasecmp(a->name, b->name, a->name_len) == 0;
}

int
headers_json(struct buf *out, const struct header *h, size_t n)
{
	char name[256];
	int first = 1;

	if (buf_putc(out, '{') < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		size_t j, nl;
		int seen = 0;

		for (j = 0; j < i && !seen; j++)
			seen = same_name(&h[i], &h[j]);
		if (seen)
			continue;
		nl = h[i].name_len < sizeof name ? h[i].name_len : sizeof name - 1;
		for (j = 0; j < nl; j++)
			name[j] = ascii_lower(h[i].name[j]);
		if (!first && buf_putc(out, ',') < 0)
			return -1;
		first = 0;
		if (json_escape(out, name, nl) < 0 || buf_putc(out, ':') < 0)
			return -1;
		if (is_redacted(&h[i])) {
			if (buf_puts(out, "\"[redacted]\"") < 0)
				return -1;
			continue;
		}
		/* Join this value and every later one of the same name. */
		{
			struct buf joined = BUF_INIT;
			int rc = buf_append(&joined, h[i].value, h[i].value_len);

			for (j = i + 1; j < n && rc == 0; j++) {
				if (!same_name(&h[i], &h[j]))
					continue;
				rc = buf_append(&joined, ", ", 2);
				if (rc == 0)
					rc = buf_append(&joined, h[j].value, h[j].value_len);
			}
			if (rc == 0)
				rc = json_escape(out, joined.p ? joined.p : "", joined.len);
			buf_free(&joined);
			if (rc < 0)
				return -1;
		}
	}
	return buf_putc(out, '}');
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode s[0..n) onto arena with a NUL; returns the offset or -1. */
static long
pct_decode(const char *s, size_t n, struct buf *arena, const char **msg)
{
	size_t start = arena->len;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
				*msg = "malformed percent-escape in the query";
				return -1;
			}
			c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
			if (c == '\0') {
				*msg = "query parameter holds a NUL byte";
				return -1;
			}
		}
		if (buf_putc(arena, c) < 0) {
			*msg = "query too large";
			return -1;
		}
	}
	if (!utf8_valid(arena->p ? arena->p + start : "", arena->len - start)) {
		*msg = "query parameter is not valid UTF-8";
		return -1;
	}
	if (buf_putc(arena, '\0') < 0) {
		*msg = "query too large";
		return -1;
	}
	return (long)start;
}

int
webhook_query_parse(const char *q, size_t n, struct webhook_query *out,
    struct buf *arena, const char **msg)
{
	static const char *const names[4] = {
		"source", "event_type", "source_identifier", "dedupe_key"
	};
	long off[4] = { -1, -1, -1, -1 };
	int seen[4] = { 0, 0, 0, 0 };
	size_t i = 0;

	memset(out, 0, sizeof *out);
	buf_reset(arena);
	while (q != NULL && i < n) {
		size_t amp = i, eq;
		long k, v;
		int which = -1;

		while (amp < n && q[amp] != '&')
			amp++;
		eq = i;
		while (eq < amp && q[eq] != '=')
			eq++;
		if (amp > i) {
			k = pct_decode(q + i, eq - i, arena, msg);
			if (k < 0)
				return -1;
			for (int j = 0; j < 4; j++)
				if (strcmp(arena->p + k, names[j]) == 0)
					which = j;
			arena->len = (size_t)k;     /* the key is not kept */
			if (which >= 0) {
				if (seen[which]++) {
					*msg = "a query parameter is given twice";
					return -1;
				}
				v = pct_decode(q + (eq < amp ? eq + 1 : amp),
				    eq < amp ? amp - eq - 1 : 0, arena, msg);
				if (v < 0)
					return -1;
				if (arena->p[v] != '\0')
					off[which] = v;
			}
		}
		i = amp + 1;
	}
	if (off[0] >= 0) out->source = arena->p + off[0];
	if (off[1] >= 0) out->event_type = arena->p + off[1];
	if (off[2] >= 0) out->source_identifier = arena->p + off[2];
	if (off[3] >= 0) out->dedupe_key = arena->p + off[3];
	return 0;
}
