#include "envelope.h"

#include <string.h>
#include <time.h>

static int
put_field(struct buf *out, const char *name, const char *value)
{
	buf_printf(out, ",\"%s\":", name);
	if (value == NULL)
		return buf_puts(out, "null");
	return json_escape(out, value, strlen(value));
}

/* Copy checked JSON text, turning CR, LF and TAB (only ever between tokens) into spaces. */
static int
put_one_line(struct buf *out, const char *s, size_t n)
{
	size_t start = out->len;

	if (buf_append(out, s, n) < 0)
		return -1;
	for (char *p = out->p + start, *end = out->p + out->len; p < end; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	}
	return 0;
}

int
envelope_build(struct buf *out, const struct envelope *e)
{
	buf_printf(out, "{\"v\":1,\"id\":\"%s\",\"workspace_id\":\"%s\"",
	    e->id, e->workspace_id);
	if (e->source != NULL)
		put_field(out, "source", e->source);
	put_field(out, "source_kind", e->source_kind);
	put_field(out, "event_type", e->event_type);
	put_field(out, "role", e->role);
	put_field(out, "dedupe_key", e->dedupe_key);
	put_field(out, "source_identifier", e->source_identifier);
	put_field(out, "received_at", e->received_at);
	buf_puts(out, ",\"headers\":");
	if (e->headers != NULL)
		put_one_line(out, e->headers, e->headers_len);
	else
		buf_puts(out, "{}");
	buf_puts(out, ",\"payload\":");
	put_one_line(out, e->payload, e->payload_len);
	buf_putc(out, '}');
	return out->failed ? -1 : 0;
}

void
timestamp_now(char out[TIMESTAMP_LEN + 1])
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(out, TIMESTAMP_LEN + 1, "%Y-%m-%dT%H:%M:%S", &tm);
	/* "YYYY-MM-DDTHH:MM:SS" is 19 characters; add ".uuuuuuZ". */
	for (int i = 0, us = (int)(ts.tv_nsec / 1000); i < 6; i++, us /= 10)
		out[25 - i] = (char)('0' + us % 10);
	out[19] = '.';
	out[26] = 'Z';
	out[27] = '\0';
}

static int
digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

int
timestamp_valid(const char *s)
{
	size_t i;

	if (strlen(s) < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) ||
	    s[7] != '-' || !digits(s + 8, 2) || (s[10] != 'T' && s[10] != 't' &&
	    s[10] != ' ') || !digits(s + 11, 2) || s[13] != ':' ||
	    !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
		return 0;
	i = 19;
	if (s[i] == '.') {
		size_t f = ++i;
		while (s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == f || i - f > 9)
			return 0;
	}
	if ((s[i] == 'Z' || s[i] == 'z') && s[i + 1] == '\0')
		return 1;
	return (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2) &&
	    s[i + 3] == ':' && digits(s + i + 4, 2) && s[i + 6] == '\0';
}

/* True when checked JSON text holds a \u0000 escape, which jsonb refuses. */
static int
has_nul_escape(const char *s, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0)
			return 1;
		i++;    /* skip the escaped character */
	}
	return 0;
}

enum field_id {
	F_V, F_ID, F_WORKSPACE, F_SOURCE, F_SOURCE_KIND, F_EVENT_TYPE, F_ROLE,
	F_DEDUPE, F_SOURCE_ID, F_RECEIVED, F_HEADERS, F_PAYLOAD, F_COUNT
};

static const char *const field_names[F_COUNT] = {
	"v", "id", "workspace_id", "source", "source_kind", "event_type",
	"role", "dedupe_key", "source_identifier", "received_at", "headers",
	"payload"
};

struct scan {
	struct json_span val[F_COUNT];
	int seen[F_COUNT];
};

static int
scan_member(const struct json_span *key, const struct json_span *value, void *arg)
{
	struct scan *sc = arg;

	for (int i = 0; i < F_COUNT; i++) {
		if (json_string_equals(key, field_names[i])) {
			sc->val[i] = *value;
			sc->seen[i] = 1;
			break;
		}
	}
	return 0;
}

/*
 * Decode the string field f into the arena; remember its offset in off[f].
 * Returns 0, or -1 with *why set.
 */
static int
take_text(struct scan *sc, int f, int required, struct buf *arena,
    size_t off[F_COUNT], const char **why)
{
	static const char *const missing[F_COUNT] = {
		[F_SOURCE] = "source must be a string",
		[F_SOURCE_KIND] = "missing or bad field source_kind",
		[F_EVENT_TYPE] = "missing or bad field event_type",
		[F_ROLE] = "missing or bad field role",
		[F_DEDUPE] = "dedupe_key must be a string or null",
		[F_SOURCE_ID] = "missing or bad field source_identifier",
		[F_RECEIVED] = "missing or bad field received_at",
	};
	struct buf tmp = BUF_INIT;
	int flags;

	off[f] = (size_t)-1;
	if (!sc->seen[f] || (sc->val[f].type == JSON_T_NULL && !required))
		return required ? (*why = missing[f], -1) : 0;
	if (sc->val[f].type != JSON_T_STRING) {
		*why = missing[f];
		return -1;
	}
	flags = json_string_decode(&sc->val[f], &tmp);
	if (flags != 0 || (required && tmp.len == 0)) {
		buf_free(&tmp);
		*why = flags < 0 ? "out of memory" : missing[f];
		return -1;
	}
	off[f] = arena->len;
	buf_append(arena, tmp.p ? tmp.p : "", tmp.len);
	buf_putc(arena, '\0');
	buf_free(&tmp);
	return arena->failed ? (*why = "out of memory", -1) : 0;
}

int
envelope_parse(const char *line, size_t n, struct envelope *e,
    struct buf *arena, const char **why)
{
	struct scan sc;
	struct json_span obj;
	size_t off[F_COUNT];
	struct buf tmp = BUF_INIT;
	const char *p;

	memset(&sc, 0, sizeof sc);
	memset(e, 0, sizeof *e);
	buf_reset(arena);
	if (json_check_object(line, n, PAYLOAD_MAX_DEPTH + 1, &obj, NULL) != JSON_OK) {
		*why = "not a valid JSON object";
		return -1;
	}
	json_object_each(&obj, scan_member, &sc);
	if (!sc.seen[F_V] || sc.val[F_V].type != JSON_T_NUMBER ||
	    sc.val[F_V].len != 1 || sc.val[F_V].start[0] != '1') {
		*why = "missing or unsupported version v (want 1)";
		return -1;
	}
	for (int f = F_ID; f <= F_WORKSPACE; f++) {
		char *dst = f == F_ID ? e->id : e->workspace_id;
		int bad = !sc.seen[f] || sc.val[f].type != JSON_T_STRING ||
		    json_string_decode(&sc.val[f], &tmp) != 0 ||
		    uuid_canonical(tmp.p, tmp.len, dst) < 0;

		buf_reset(&tmp);
		if (bad) {
			buf_free(&tmp);
			*why = f == F_ID ? "missing or bad field id (want a UUID)" :
			    "missing or bad field workspace_id (want a UUID)";
			return -1;
		}
	}
	buf_free(&tmp);
	if (take_text(&sc, F_SOURCE, 0, arena, off, why) < 0 ||
	    take_text(&sc, F_SOURCE_KIND, 1, arena, off, why) < 0 ||
	    take_text(&sc, F_EVENT_TYPE, 1, arena, off, why) < 0 ||
	    take_text(&sc, F_ROLE, 1, arena, off, why) < 0 ||
	    take_text(&sc, F_DEDUPE, 0, arena, off, why) < 0 ||
	    take_text(&sc, F_SOURCE_ID, 1, arena, off, why) < 0 ||
	    take_text(&sc, F_RECEIVED, 1, arena, off, why) < 0)
		return -1;
	if (sc.seen[F_HEADERS]) {
		if (sc.val[F_HEADERS].type != JSON_T_OBJECT ||
		    has_nul_escape(sc.val[F_HEADERS].start, sc.val[F_HEADERS].len)) {
			*why = "headers must be an object without \\u0000";
			return -1;
		}
		e->headers = sc.val[F_HEADERS].start;
		e->headers_len = sc.val[F_HEADERS].len;
	}
	if (!sc.seen[F_PAYLOAD] || sc.val[F_PAYLOAD].type != JSON_T_OBJECT) {
		*why = "missing field payload or not an object";
		return -1;
	}
	e->payload = sc.val[F_PAYLOAD].start;
	e->payload_len = sc.val[F_PAYLOAD].len;

	p = arena->p;
#define AT(f) (off[f] == (size_t)-1 ? NULL : p + off[f])
	e->source = AT(F_SOURCE);
	e->source_kind = AT(F_SOURCE_KIND);
	e->event_type = AT(F_EVENT_TYPE);
	e->role = AT(F_ROLE);
	e->dedupe_key = AT(F_DEDUPE);
	e->source_identifier = AT(F_SOURCE_ID);
	e->received_at = AT(F_RECEIVED);
#undef AT
	if (!timestamp_valid(e->received_at)) {
		*why = "received_at is not an RFC 3339 date-time";
		return -1;
	}
	return 0;
}

struct ids {
	char *id, *event_id;
};

static void
copy_short(const struct json_span *v, char out[UUID_LEN + 1])
{
	if (v->type == JSON_T_STRING && v->len >= 2 && v->len - 2 <= UUID_LEN &&
	    memchr(v->start + 1, '\\', v->len - 2) == NULL) {
		memcpy(out, v->start + 1, v->len - 2);
		out[v->len - 2] = '\0';
	}
}

static int
ids_member(const struct json_span *key, const struct json_span *value, void *arg)
{
	struct ids *ids = arg;

	if (json_string_equals(key, "id"))
		copy_short(value, ids->id);
	else if (json_string_equals(key, "event_id"))
		copy_short(value, ids->event_id);
	return 0;
}

void
envelope_ids(const char *line, size_t n, char id[UUID_LEN + 1],
    char event_id[UUID_LEN + 1])
{
	struct json_span obj;
	struct ids ids = { id, event_id };

	id[0] = event_id[0] = '\0';
	if (json_check_object(line, n, PAYLOAD_MAX_DEPTH + 2, &obj, NULL) == JSON_OK)
		json_object_each(&obj, ids_member, &ids);
}
