/*
 * json.c: strict RFC 8259 checking and scanning without a tree; the
 * contracts are in json.h.
 *
 * Choices json.h leaves open, fixed here:
 *  - A leading UTF-8 byte order mark (EF BB BF) is JSON_SYNTAX, offset 0.
 *    It is valid UTF-8, just not JSON: RFC 8259 8.1 forbids sending it and
 *    PostgreSQL's json input refuses it.
 *  - Outside strings a byte >= 0x80 is JSON_BAD_UTF8 when it does not start
 *    a well-formed UTF-8 sequence, else JSON_SYNTAX (e.g. U+00A0 is not
 *    JSON whitespace).
 *  - err->offset is the byte where the grammar fails (n when the text ends
 *    too early); for invalid UTF-8, the first byte of the ill-formed
 *    sequence (its lead byte, or the stray continuation byte); for an
 *    unpaired surrogate, the backslash of the unpaired \u escape; for
 *    JSON_TOO_DEEP, the bracket that opens one level too many; for
 *    JSON_EMPTY, n; for JSON_NOT_OBJECT, the start of the value.
 *  - A \uD800-\uDBFF escape is paired only by a directly following, well
 *    formed \uDC00-\uDFFF escape; anything else after it (including a
 *    malformed \u escape) makes it the reported problem, JSON_SURROGATE.
 *  - max_depth <= 0 admits scalars only. text == NULL is taken as empty.
 *  - *value is written only when the text is valid JSON (JSON_OK, or
 *    JSON_NOT_OBJECT from json_check_object()).
 *  - Nesting deeper than 8192 levels needs one malloc; if it fails the
 *    text is refused as JSON_TOO_DEEP ("nesting too deep (out of
 *    memory)"), json.h having no status for it.
 *  - json_object_each() on a span that is not an accepted object visits
 *    what it can parse, never reads outside the span, and returns 0.
 *  - json_escape() writes one \ufffd per maximal subpart of ill-formed
 *    UTF-8 (Unicode 3.9, as WHATWG decoders do), so "\xe2\x82x" gives
 *    one, "\xed\xa0\x80" three.
 *
 * json_check() is one forward pass, iterative. The only per-level state is
 * whether the enclosing container is an object: one bit per level, kept on
 * the C stack up to STACK_LEVELS and, past that, in one heap block sized
 * min(max_depth, n) allocated at most once per call. Strings, the bulk of
 * any webhook body, are skipped 8 bytes at a time while the bytes are
 * printable ASCII without '"' or '\\'.
 */
#include "json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define STACK_BYTES	1024			/* on-stack nesting bits */
#define STACK_LEVELS	(STACK_BYTES * 8)

#define ONES		UINT64_C(0x0101010101010101)
#define HIGHS		UINT64_C(0x8080808080808080)

/* Where a scan stopped, for json_error. */
struct problem {
	enum json_status	 st;
	const unsigned char	*at;
	const char		*what;
};

/* JSON whitespace, RFC 8259 section 2: space, tab, LF, CR and nothing else. */
static const unsigned char ws_tab[256] = {
	['\t'] = 1, ['\n'] = 1, ['\r'] = 1, [' '] = 1
};

/*
 * Bytes that stand for themselves inside a string, need no escaping on
 * output, and are one character each: printable ASCII and DEL, except '"'
 * and '\\'.
 */
static const unsigned char str_plain[256] = {
	/* 0x00-0x1f: control characters */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x20-0x2f, '"' is 0x22 */
	1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	/* 0x50-0x5f, '\\' is 0x5c */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
	/* 0x80-0xff: 0, UTF-8 is checked separately */
};

static const unsigned char *
bad(struct problem *pb, enum json_status st, const unsigned char *at,
    const char *what)
{
	pb->st = st;
	pb->at = at;
	pb->what = what;
	return NULL;
}

/*
 * Nonzero when one of the 8 bytes of w is not str_plain: a control
 * character, '"', '\\' or a byte >= 0x80. Exact as to "is there one",
 * whatever the byte order; which byte it is does not matter to callers.
 */
static inline uint64_t
swar_special(uint64_t w)
{
	uint64_t q = w ^ (ONES * '"');
	uint64_t b = w ^ (ONES * '\\');

	return (w | ((w - ONES * 0x20) & ~w) | ((q - ONES) & ~q) |
	    ((b - ONES) & ~b)) & HIGHS;
}

static inline int
is_digit(unsigned char c)
{
	return (unsigned char)(c - '0') < 10;
}

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Value of the 4 hex digits at p (there must be 4 bytes before end), or -1.
 * On -1 *badp, when not NULL, is the first byte that is not a hex digit.
 */
static long
hex4(const unsigned char *p, const unsigned char *end,
    const unsigned char **badp)
{
	long v = 0;
	int i, h;

	for (i = 0; i < 4; i++) {
		if (p + i >= end || (h = hexval(p[i])) < 0) {
			if (badp != NULL)
				*badp = p + i;
			return -1;
		}
		v = v << 4 | h;
	}
	return v;
}

/*
 * Length of the well-formed UTF-8 sequence at s[0..n), n >= 1, or 0 when
 * there is none. Then *skip is the length of the maximal subpart (Unicode
 * 3.9, "U+FFFD substitution of maximal subparts"): the longest prefix of a
 * well-formed sequence found there, at least 1 byte. Overlongs, encoded
 * surrogates (ED A0..BF) and anything above U+10FFFF are ill-formed.
 */
static size_t
utf8_seq(const unsigned char *s, size_t n, size_t *skip)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t need, i;

	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		need = 0;		/* continuation byte or C0/C1 overlong */
	else if (c < 0xe0)
		need = 1;
	else if (c < 0xf0) {
		need = 2;
		if (c == 0xe0)
			lo = 0xa0;	/* overlong below U+0800 */
		else if (c == 0xed)
			hi = 0x9f;	/* U+D800-U+DFFF */
	} else if (c < 0xf5) {
		need = 3;
		if (c == 0xf0)
			lo = 0x90;	/* overlong below U+10000 */
		else if (c == 0xf4)
			hi = 0x8f;	/* above U+10FFFF */
	} else
		need = 0;		/* F5-FF never occur */
	if (need == 0) {
		*skip = 1;
		return 0;
	}
	for (i = 1; i <= need; i++) {
		if (i >= n || s[i] < lo || s[i] > hi) {
			*skip = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return need + 1;
}

/* A byte that cannot start what the grammar wants here. */
static const unsigned char *
unexpected(struct problem *pb, const unsigned char *p,
    const unsigned char *end, const char *what)
{
	size_t skip;

	if (*p >= 0x80 && utf8_seq(p, (size_t)(end - p), &skip) == 0)
		return bad(pb, JSON_BAD_UTF8, p, "invalid UTF-8");
	return bad(pb, JSON_SYNTAX, p, what);
}

/* End of the string token whose opening quote is at p, or NULL. */
static const unsigned char *
scan_string(const unsigned char *p, const unsigned char *end,
    struct problem *pb)
{
	const unsigned char *esc, *hexbad = end;
	uint64_t w;
	long cp, lo;
	size_t len, skip;

	p++;
	for (;;) {
		while (end - p >= 8) {
			memcpy(&w, p, sizeof(w));
			if (swar_special(w))
				break;
			p += 8;
		}
		while (p < end && str_plain[*p])
			p++;
		if (p == end)
			return bad(pb, JSON_SYNTAX, end, "unterminated string");
		switch (*p) {
		case '"':
			return p + 1;
		case '\\':
			esc = p;
			if (end - p < 2)
				return bad(pb, JSON_SYNTAX, end,
				    "unterminated string");
			switch (p[1]) {
			case '"': case '\\': case '/':
			case 'b': case 'f': case 'n': case 'r': case 't':
				p += 2;
				break;
			case 'u':
				if ((cp = hex4(p + 2, end, &hexbad)) < 0)
					return bad(pb, JSON_SYNTAX, hexbad,
					    "\\u escape needs 4 hex digits");
				p += 6;
				if (cp >= 0xdc00 && cp <= 0xdfff)
					return bad(pb, JSON_SURROGATE, esc,
					    "low surrogate escape without a "
					    "high one");
				if (cp >= 0xd800 && cp <= 0xdbff) {
					if (end - p < 6 || p[0] != '\\' ||
					    p[1] != 'u' ||
					    (lo = hex4(p + 2, end, NULL)) < 0xdc00 ||
					    lo > 0xdfff)
						return bad(pb, JSON_SURROGATE,
						    esc, "high surrogate escape "
						    "without a low one");
					p += 6;
				}
				break;
			default:
				return bad(pb, JSON_SYNTAX, p + 1,
				    "invalid escape in string");
			}
			break;
		default:
			if (*p < 0x20)
				return bad(pb, JSON_SYNTAX, p,
				    "unescaped control character in string");
			if ((len = utf8_seq(p, (size_t)(end - p), &skip)) == 0)
				return bad(pb, JSON_BAD_UTF8, p,
				    "invalid UTF-8 in string");
			p += len;
			break;
		}
	}
}

/* End of the number at p ('-' or a digit), or NULL. */
static const unsigned char *
scan_number(const unsigned char *p, const unsigned char *end,
    struct problem *pb)
{
	if (*p == '-')
		p++;
	if (p == end || !is_digit(*p))
		return bad(pb, JSON_SYNTAX, p, "expected a digit in number");
	if (*p == '0') {
		p++;
		if (p < end && is_digit(*p))
			return bad(pb, JSON_SYNTAX, p,
			    "leading zero in number");
	} else {
		while (p < end && is_digit(*p))
			p++;
	}
	if (p < end && *p == '.') {
		p++;
		if (p == end || !is_digit(*p))
			return bad(pb, JSON_SYNTAX, p,
			    "expected a digit after the decimal point");
		while (p < end && is_digit(*p))
			p++;
	}
	if (p < end && (*p | 0x20) == 'e') {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p == end || !is_digit(*p))
			return bad(pb, JSON_SYNTAX, p,
			    "expected a digit in exponent");
		while (p < end && is_digit(*p))
			p++;
	}
	return p;
}

static const unsigned char *
scan_literal(const unsigned char *p, const unsigned char *end,
    const char *lit, size_t len, struct problem *pb)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p + i == end || p[i] != (unsigned char)lit[i])
			return bad(pb, JSON_SYNTAX, p + i, "invalid literal");
	return p + len;
}

static enum json_type
type_of(unsigned char c)
{
	switch (c) {
	case '{':
		return JSON_T_OBJECT;
	case '[':
		return JSON_T_ARRAY;
	case '"':
		return JSON_T_STRING;
	case 't':
		return JSON_T_TRUE;
	case 'f':
		return JSON_T_FALSE;
	case 'n':
		return JSON_T_NULL;
	default:
		return JSON_T_NUMBER;
	}
}

static enum json_status
report(struct json_error *err, enum json_status st, size_t offset,
    const char *what)
{
	if (err != NULL) {
		err->status = st;
		err->offset = offset;
		err->what = what;
	}
	return st;
}

enum json_status
json_check(const char *text, size_t n, int max_depth,
    struct json_span *value, struct json_error *err)
{
	unsigned char local[STACK_BYTES];
	unsigned char *bits = local, *heap = NULL;
	const unsigned char *base, *p, *end, *vstart, *vend;
	size_t depth = 0, limit, cap = STACK_LEVELS, want;
	struct problem pb;
	enum json_status st;
	int in_obj = 0;

	if (text == NULL || n == 0)
		return report(err, JSON_EMPTY, 0, "empty body");
	limit = max_depth > 0 ? (size_t)max_depth : 0;
	base = (const unsigned char *)text;
	p = base;
	end = base + n;
	if (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
		return report(err, JSON_SYNTAX, 0, "byte order mark");
	while (p < end && ws_tab[*p])
		p++;
	if (p == end)
		return report(err, JSON_EMPTY, n, "empty body");
	vstart = p;

	/*
	 * Each label is entered with p at the next byte to look at and any
	 * whitespace before it already skipped, except at "after".
	 */
value:
	if (p == end)
		goto early_end;
	switch (*p) {
	case '{':
	case '[':
		if (depth >= limit) {
			bad(&pb, JSON_TOO_DEEP, p, "nesting too deep");
			goto fail;
		}
		if (depth == cap) {
			/*
			 * Depth stays below min(max_depth, n), as each level
			 * costs a byte, so this happens at most once.
			 */
			want = limit < n ? limit : n;
			if (heap != NULL || want <= depth ||
			    (heap = malloc(want / 8 + 1)) == NULL) {
				bad(&pb, JSON_TOO_DEEP, p,
				    "nesting too deep (out of memory)");
				goto fail;
			}
			memcpy(heap, local, sizeof(local));
			bits = heap;
			cap = want;
		}
		in_obj = *p == '{';
		if (in_obj)
			bits[depth >> 3] |= 1U << (depth & 7);
		else
			bits[depth >> 3] &= (unsigned char)~(1U << (depth & 7));
		depth++;
		p++;
		while (p < end && ws_tab[*p])
			p++;
		if (p < end && *p == (in_obj ? '}' : ']')) {
			p++;
			goto close;
		}
		if (in_obj)
			goto key;
		goto value;
	case '"':
		if ((p = scan_string(p, end, &pb)) == NULL)
			goto fail;
		goto after;
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		if ((p = scan_number(p, end, &pb)) == NULL)
			goto fail;
		goto after;
	case 't':
		if ((p = scan_literal(p, end, "true", 4, &pb)) == NULL)
			goto fail;
		goto after;
	case 'f':
		if ((p = scan_literal(p, end, "false", 5, &pb)) == NULL)
			goto fail;
		goto after;
	case 'n':
		if ((p = scan_literal(p, end, "null", 4, &pb)) == NULL)
			goto fail;
		goto after;
	default:
		unexpected(&pb, p, end, "expected a value");
		goto fail;
	}

key:
	if (p == end)
		goto early_end;
	if (*p != '"') {
		unexpected(&pb, p, end, "expected a string key");
		goto fail;
	}
	if ((p = scan_string(p, end, &pb)) == NULL)
		goto fail;
	while (p < end && ws_tab[*p])
		p++;
	if (p == end)
		goto early_end;
	if (*p != ':') {
		unexpected(&pb, p, end, "expected ':' after key");
		goto fail;
	}
	p++;
	while (p < end && ws_tab[*p])
		p++;
	goto value;

close:
	depth--;
	if (depth > 0)
		in_obj = bits[(depth - 1) >> 3] >> ((depth - 1) & 7) & 1;
after:
	if (depth == 0)
		goto done;
	while (p < end && ws_tab[*p])
		p++;
	if (p == end)
		goto early_end;
	if (*p == ',') {
		p++;
		while (p < end && ws_tab[*p])
			p++;
		if (in_obj)
			goto key;
		goto value;
	}
	if (*p == (in_obj ? '}' : ']')) {
		p++;
		goto close;
	}
	unexpected(&pb, p, end, in_obj ? "expected ',' or '}'" :
	    "expected ',' or ']'");
	goto fail;

done:
	vend = p;
	while (p < end && ws_tab[*p])
		p++;
	if (p != end) {
		unexpected(&pb, p, end, "trailing characters after the value");
		goto fail;
	}
	if (value != NULL) {
		value->start = (const char *)vstart;
		value->len = (size_t)(vend - vstart);
		value->type = type_of(*vstart);
	}
	st = report(err, JSON_OK, 0, "ok");
	goto out;

early_end:
	bad(&pb, JSON_SYNTAX, end, "unexpected end of input");
fail:
	st = report(err, pb.st, (size_t)(pb.at - base), pb.what);
out:
	free(heap);
	return st;
}

enum json_status
json_check_object(const char *text, size_t n, int max_depth,
    struct json_span *value, struct json_error *err)
{
	struct json_span v;
	enum json_status st;

	if ((st = json_check(text, n, max_depth, &v, err)) != JSON_OK)
		return st;
	if (value != NULL)
		*value = v;
	if (v.type != JSON_T_OBJECT)
		return report(err, JSON_NOT_OBJECT, (size_t)(v.start - text),
		    "not an object");
	return JSON_OK;
}

/*
 * The scanners below serve text that json_check() accepted, so they only
 * find ends; they still never look outside [p, end) and give NULL when the
 * text is cut short.
 */

static const unsigned char *
skip_ws(const unsigned char *p, const unsigned char *end)
{
	while (p < end && ws_tab[*p])
		p++;
	return p;
}

/* End of the string token whose opening quote is at open, or NULL. */
static const unsigned char *
skip_string(const unsigned char *open, const unsigned char *end)
{
	const unsigned char *p = open + 1, *q, *b;

	while (p < end &&
	    (q = memchr(p, '"', (size_t)(end - p))) != NULL) {
		/* The quote ends the string unless an odd run of '\\'s escapes it. */
		for (b = q; b > open + 1 && b[-1] == '\\'; b--)
			;
		if (((q - b) & 1) == 0)
			return q + 1;
		p = q + 1;
	}
	return NULL;
}

/* End of the value starting at p, or NULL. */
static const unsigned char *
skip_value(const unsigned char *p, const unsigned char *end)
{
	size_t depth = 0;

	if (p == end)
		return NULL;
	switch (*p) {
	case '"':
		return skip_string(p, end);
	case '{':
	case '[':
		while (p < end) {
			switch (*p) {
			case '"':
				if ((p = skip_string(p, end)) == NULL)
					return NULL;
				continue;
			case '{':
			case '[':
				depth++;
				break;
			case '}':
			case ']':
				if (--depth == 0)
					return p + 1;
				break;
			}
			p++;
		}
		return NULL;
	default:
		while (p < end && !ws_tab[*p] && *p != ',' && *p != '}' &&
		    *p != ']')
			p++;
		return p;
	}
}

int
json_object_each(const struct json_span *object, json_member_fn fn,
    void *arg)
{
	const unsigned char *p, *end, *k, *v;
	struct json_span key, val;
	int r;

	if (object == NULL || object->start == NULL || object->len < 2 ||
	    object->start[0] != '{')
		return 0;
	p = (const unsigned char *)object->start;
	end = p + object->len;
	p = skip_ws(p + 1, end);
	while (p < end && *p == '"') {
		k = p;
		if ((p = skip_string(p, end)) == NULL)
			return 0;
		key.start = (const char *)k;
		key.len = (size_t)(p - k);
		key.type = JSON_T_STRING;
		p = skip_ws(p, end);
		if (p == end || *p != ':')
			return 0;
		v = p = skip_ws(p + 1, end);
		if ((p = skip_value(p, end)) == NULL || p == v)
			return 0;
		val.start = (const char *)v;
		val.len = (size_t)(p - v);
		val.type = type_of(*v);
		if ((r = fn(&key, &val, arg)) != 0)
			return r;
		p = skip_ws(p, end);
		if (p == end || *p != ',')
			return 0;
		p = skip_ws(p + 1, end);
	}
	return 0;
}

static size_t
utf8_put(unsigned char *u, unsigned long cp)
{
	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | cp >> 6);
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | cp >> 12);
		u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	u[0] = (unsigned char)(0xf0 | cp >> 18);
	u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	u[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Decode the escape at *pp (a backslash, before end) into u[0..*ulen) and
 * move *pp past it, a surrogate pair counting as one escape. Returns the
 * JSON_STR_* flags it earns, or -1 when the escape is malformed.
 */
static int
decode_escape(const unsigned char **pp, const unsigned char *end,
    unsigned char u[4], size_t *ulen)
{
	const unsigned char *p = *pp;
	long cp, lo;
	int flags = 0;

	if (end - p < 2)
		return -1;
	*ulen = 1;
	switch (p[1]) {
	case '"':
	case '\\':
	case '/':
		u[0] = p[1];
		break;
	case 'b':
		u[0] = '\b';
		break;
	case 'f':
		u[0] = '\f';
		break;
	case 'n':
		u[0] = '\n';
		break;
	case 'r':
		u[0] = '\r';
		break;
	case 't':
		u[0] = '\t';
		break;
	case 'u':
		if ((cp = hex4(p + 2, end, NULL)) < 0)
			return -1;
		p += 6;
		if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 6 &&
		    p[0] == '\\' && p[1] == 'u' &&
		    (lo = hex4(p + 2, end, NULL)) >= 0xdc00 && lo <= 0xdfff) {
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			p += 6;
		} else if (cp >= 0xd800 && cp <= 0xdfff) {
			cp = 0xfffd;
			flags |= JSON_STR_HAS_SURROGATE;
		} else if (cp == 0)
			flags |= JSON_STR_HAS_NUL;
		*ulen = utf8_put(u, (unsigned long)cp);
		*pp = p;
		return flags;
	default:
		return -1;
	}
	*pp = p + 2;
	return 0;
}

static int
is_string_token(const struct json_span *t)
{
	return t != NULL && t->type == JSON_T_STRING && t->start != NULL &&
	    t->len >= 2 && t->start[0] == '"' && t->start[t->len - 1] == '"';
}

int
json_string_decode(const struct json_span *token, struct buf *out)
{
	const unsigned char *p, *end, *q;
	unsigned char u[4];
	size_t ulen;
	int flags = 0, f;

	buf_reset(out);
	if (!is_string_token(token))
		return -1;
	p = (const unsigned char *)token->start + 1;
	end = (const unsigned char *)token->start + token->len - 1;
	while (p < end) {
		if ((q = memchr(p, '\\', (size_t)(end - p))) == NULL)
			q = end;
		if (q > p && buf_append(out, p, (size_t)(q - p)) < 0)
			goto fail;
		if ((p = q) == end)
			break;
		if ((f = decode_escape(&p, end, u, &ulen)) < 0 ||
		    buf_append(out, u, ulen) < 0)
			goto fail;
		flags |= f;
	}
	/* Makes out->p a C string even when nothing was decoded. */
	if (buf_append(out, "", 0) < 0)
		goto fail;
	return flags;
fail:
	out->len = 0;
	if (out->p != NULL)
		out->p[0] = '\0';
	return -1;
}

int
json_string_equals(const struct json_span *token, const char *want)
{
	const unsigned char *p, *end, *w = (const unsigned char *)want;
	unsigned char u[4];
	size_t ulen, i;

	if (!is_string_token(token) || want == NULL)
		return 0;
	p = (const unsigned char *)token->start + 1;
	end = (const unsigned char *)token->start + token->len - 1;
	while (p < end) {
		if (*p != '\\') {
			if (*w == '\0' || *w != *p)
				return 0;
			w++;
			p++;
			continue;
		}
		if (decode_escape(&p, end, u, &ulen) < 0)
			return 0;
		/* A decoded NUL never matches: want ends at its first NUL. */
		for (i = 0; i < ulen; i++, w++)
			if (u[i] == '\0' || *w != u[i])
				return 0;
	}
	return *w == '\0';
}

int
json_escape(struct buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p, *end, *run;
	size_t saved = out->len, len, skip;
	char e[6];
	uint64_t w;

	if (buf_putc(out, '"') < 0)
		goto fail;
	if (s == NULL || n == 0)
		goto close;
	p = run = (const unsigned char *)s;
	end = p + n;
	while (p < end) {
		while (end - p >= 8) {
			memcpy(&w, p, sizeof(w));
			if (swar_special(w))
				break;
			p += 8;
		}
		while (p < end && str_plain[*p])
			p++;
		if (p == end)
			break;
		if (*p >= 0x80 &&
		    (len = utf8_seq(p, (size_t)(end - p), &skip)) != 0) {
			p += len;
			continue;
		}
		if (p > run && buf_append(out, run, (size_t)(p - run)) < 0)
			goto fail;
		e[0] = '\\';
		len = 2;
		skip = 1;
		switch (*p) {
		case '"':
		case '\\':
			e[1] = (char)*p;
			break;
		case '\b':
			e[1] = 'b';
			break;
		case '\f':
			e[1] = 'f';
			break;
		case '\n':
			e[1] = 'n';
			break;
		case '\r':
			e[1] = 'r';
			break;
		case '\t':
			e[1] = 't';
			break;
		default:
			len = 6;
			if (*p == '\0' || *p >= 0x80) {
				/* jsonb refuses \u0000; U+FFFD it is. */
				memcpy(e, "\\ufffd", 6);
				if (*p >= 0x80)
					utf8_seq(p, (size_t)(end - p), &skip);
			} else {
				memcpy(e, "\\u00", 4);
				e[4] = hex[*p >> 4];
				e[5] = hex[*p & 0xf];
			}
			break;
		}
		if (buf_append(out, e, len) < 0)
			goto fail;
		p += skip;
		run = p;
	}
	if (p > run && buf_append(out, run, (size_t)(p - run)) < 0)
		goto fail;
close:
	if (buf_putc(out, '"') < 0)
		goto fail;
	return 0;
fail:
	/* All or nothing, like a single buf append. */
	out->len = saved;
	if (out->p != NULL)
		out->p[saved] = '\0';
	return -1;
}

int
utf8_valid(const char *s, size_t n)
{
	const unsigned char *p, *end;
	size_t len, skip;
	uint64_t w;

	if (s == NULL || n == 0)
		return n == 0;
	p = (const unsigned char *)s;
	end = p + n;
	while (p < end) {
		while (end - p >= 8) {
			memcpy(&w, p, sizeof(w));
			if (w & HIGHS)
				break;
			p += 8;
		}
		while (p < end && *p < 0x80)
			p++;
		if (p == end)
			break;
		if ((len = utf8_seq(p, (size_t)(end - p), &skip)) == 0)
			return 0;
		p += len;
	}
	return 1;
}

const char *
json_status_code(enum json_status st)
{
	switch (st) {
	case JSON_OK:
		return "ok";
	case JSON_EMPTY:
		return "empty_body";
	case JSON_SYNTAX:
		return "invalid_json";
	case JSON_BAD_UTF8:
		return "invalid_utf8";
	case JSON_SURROGATE:
		return "unpaired_surrogate";
	case JSON_TOO_DEEP:
		return "too_deep";
	case JSON_NOT_OBJECT:
		return "not_object";
	}
	/* Not a status: the caller's bug, reported as the generic failure. */
	return "invalid_json";
}
