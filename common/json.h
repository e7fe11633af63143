/*
 * json.h: strict RFC 8259 JSON for bodies and envelope lines.
 *
 * cJSON is lenient (leading zeros, raw control characters, invalid UTF-8,
 * trailing garbage) and turns numbers into doubles, so text that we store or
 * forward is checked and scanned here instead, without building a tree.
 *
 * Contract of json_check(): it accepts exactly what RFC 8259 calls a JSON
 * text (one value, optional whitespace around it) that is also valid UTF-8
 * (no overlong forms, no surrogate code points, nothing above U+10FFFF, no BOM)
 * and whose \u escapes are never an unpaired surrogate (\uD800-\uDFFF must
 * come as a high+low pair). \u0000 is accepted. Nesting deeper than max_depth
 * arrays/objects is rejected (depth 1 = the top-level object itself).
 * Everything PostgreSQL's json type would refuse is refused here.
 */
#ifndef INFONCHAT_JSON_H
#define INFONCHAT_JSON_H

#include <stddef.h>

#include "buf.h"

enum json_status {
	JSON_OK = 0,
	JSON_EMPTY,        /* nothing but whitespace */
	JSON_SYNTAX,       /* grammar violation, trailing garbage, bad escape */
	JSON_BAD_UTF8,     /* invalid UTF-8 anywhere in the text */
	JSON_SURROGATE,    /* an unpaired \uD800-\uDFFF escape */
	JSON_TOO_DEEP,     /* nesting deeper than max_depth */
	JSON_NOT_OBJECT    /* only from json_check_object(): valid, not an object */
};

enum json_type {
	JSON_T_OBJECT, JSON_T_ARRAY, JSON_T_STRING, JSON_T_NUMBER,
	JSON_T_TRUE, JSON_T_FALSE, JSON_T_NULL
};

struct json_error {
	enum json_status status;
	size_t offset;     /* byte offset of the first offending byte */
	const char *what;  /* static human text, e.g. "leading zero in number" */
};

/* A span of the checked text; start points into the caller's buffer. */
struct json_span {
	const char *start;
	size_t len;
	enum json_type type;
};

/*
 * Check text[0..n) as above. Returns JSON_OK or the first problem found, with
 * err filled in (err may be NULL). The top-level value's span (without the
 * surrounding whitespace) goes to *value when value is not NULL.
 */
enum json_status json_check(const char *text, size_t n, int max_depth,
    struct json_span *value, struct json_error *err);

/* As json_check(), and also JSON_NOT_OBJECT unless the value is an object. */
enum json_status json_check_object(const char *text, size_t n, int max_depth,
    struct json_span *value, struct json_error *err);

/*
 * Visit the members of an object that json_check() accepted, in text order
 * (duplicates included: a caller that wants PostgreSQL's "last one wins"
 * simply lets later calls overwrite earlier ones). key is the raw string
 * token including its quotes; value is the member's value span. The callback
 * returns 0 to go on, anything else to stop; json_object_each returns that
 * value, or 0 when all members were visited.
 */
typedef int (*json_member_fn)(const struct json_span *key,
    const struct json_span *value, void *arg);
int json_object_each(const struct json_span *object, json_member_fn fn,
    void *arg);

/* Flags reported by json_string_decode(). */
#define JSON_STR_HAS_NUL        0x1   /* contained \u0000 */
#define JSON_STR_HAS_SURROGATE  0x2   /* contained an unpaired surrogate escape */

/*
 * Decode a string token (with its quotes) that json_check() accepted into
 * UTF-8 in out (reset first, NUL-terminated). An unpaired surrogate escape is
 * written as U+FFFD and flagged. Returns the JSON_STR_* flags, or -1 when out
 * cannot grow (its ceiling) or the token is not a string.
 */
int json_string_decode(const struct json_span *token, struct buf *out);

/*
 * True when the string token, decoded, equals the NUL-free C string want.
 * Escapes are honoured ("\u0065vent" equals "event"), and no allocation made.
 */
int json_string_equals(const struct json_span *token, const char *want);

/*
 * Append s[0..n) to out as a quoted JSON string. Quotes, backslashes and
 * control characters are escaped (\n, \t, ..., else \u00XX); a NUL byte or
 * invalid UTF-8 sequence is written as \ufffd, so the result is always valid
 * UTF-8 JSON that jsonb accepts. Returns 0, or -1 when out hit its ceiling.
 */
int json_escape(struct buf *out, const char *s, size_t n);

/* True when s[0..n) is valid UTF-8 by the rules above. */
int utf8_valid(const char *s, size_t n);

/* Static name of a status for error codes: "invalid_json", "invalid_utf8", ... */
const char *json_status_code(enum json_status st);

#endif
