/*
 * envelope.h: the inbox envelope, version 1 (man 7 infonchat-envelope).
 *
 * One envelope is one JSON object on one line. Its payload is the request
 * body exactly as sent, but for whitespace between tokens (CR, LF and TAB
 * there become spaces so the envelope stays on one line): numbers, key
 * order, duplicate keys and escapes are never re-serialised.
 */
#ifndef INFONCHAT_ENVELOPE_H
#define INFONCHAT_ENVELOPE_H

#include <stddef.h>

#include "buf.h"
#include "json.h"
#include "uuid.h"

#define TIMESTAMP_LEN 27     /* 2026-11-26T21:09:34.123456Z */

/* Nesting allowed in a request body, and so in an envelope's payload. */
#define PAYLOAD_MAX_DEPTH 1000

struct envelope {
	char id[UUID_LEN + 1];
	char workspace_id[UUID_LEN + 1];
	const char *source;
	const char *source_kind;
	const char *event_type;
	const char *role;
	const char *dedupe_key;          /* NULL: null */
	const char *source_identifier;
	const char *received_at;
	const char *headers;             /* a JSON object's text */
	size_t headers_len;
	const char *payload;             /* a checked JSON object's text */
	size_t payload_len;
};

/*
 * Append e as one line of JSON (without the newline) to out. The text
 * fields must be NUL-free UTF-8; they are escaped here. Returns 0 or -1.
 */
int envelope_build(struct buf *out, const struct envelope *e);

/*
 * Parse one envelope line. On success the envelope's pointers refer to
 * decoded copies kept in *arena (reset first) or into line itself (headers,
 * payload), so both must outlive e. Returns 0, or -1 with a static reason in
 * *why ("not valid JSON", "missing field id", ...).
 *
 * Accepted: "v":1; id and workspace_id in UUID form (stored lower-cased);
 * source_kind, event_type, role, source_identifier and received_at
 * (RFC 3339) as non-empty strings without \u0000; dedupe_key a string or
 * null or absent; source a string or absent; headers an object without
 * \u0000 or absent ({}); payload an object. Unknown members are ignored.
 */
int envelope_parse(const char *line, size_t n, struct envelope *e,
    struct buf *arena, const char **why);

/*
 * The "id" and "event_id" members of an envelope line (inbox or outbox), as
 * written, for log lines; each is "" when absent or not a short string.
 */
void envelope_ids(const char *line, size_t n, char id[UUID_LEN + 1],
    char event_id[UUID_LEN + 1]);

/* Write the current UTC time as in received_at. */
void timestamp_now(char out[TIMESTAMP_LEN + 1]);

/* True when s is an RFC 3339 date-time (Z or a numeric offset). */
int timestamp_valid(const char *s);

#endif
