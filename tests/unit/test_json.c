/*
 * test_json.c: unit tests of common/json.c, then a replay of the
 * JSONTestSuite parsing corpus.
 *
 * usage: test_json [corpus-dir]
 * corpus-dir defaults to tests/data/jsontestsuite/test_parsing, which is
 * right when run from the project root.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"
#include "json.h"

#define DEFAULT_CORPUS	"tests/data/jsontestsuite/test_parsing"

/* utf8_valid() of a string literal (embedded NULs kept). */
#define UV(lit)	utf8_valid((lit), sizeof(lit) - 1)

/* Status of json_check() on a string literal (embedded NULs kept). */
#define ST(lit) \
	json_check((lit), sizeof(lit) - 1, 1000, NULL, NULL)

/* Status and error offset of json_check() on a string literal. */
#define EXPECT_AT(lit, st, off) do { \
	struct json_error e_ = { JSON_OK, (size_t)-1, NULL }; \
	CHECK(json_check((lit), sizeof(lit) - 1, 1000, NULL, &e_) == (st)); \
	CHECK(e_.status == (st)); \
	CHECK(e_.offset == (size_t)(off)); \
	CHECK(e_.what != NULL && e_.what[0] != '\0'); \
} while (0)

/* json_escape() of a literal gives exactly want. */
#define EXPECT_ESC(lit, want) do { \
	struct buf b_ = BUF_INIT; \
	CHECK(json_escape(&b_, (lit), sizeof(lit) - 1) == 0); \
	CHECK(b_.len == sizeof(want) - 1); \
	CHECK(b_.p != NULL && memcmp(b_.p, (want), sizeof(want)) == 0); \
	CHECK(json_check(b_.p, b_.len, 1, NULL, NULL) == JSON_OK); \
	buf_free(&b_); \
} while (0)

/* json_string_decode() of a literal token gives want (with its NULs), flags. */
#define EXPECT_DEC(lit, want, fl) do { \
	struct buf b_ = BUF_INIT; \
	struct json_span t_ = { (lit), sizeof(lit) - 1, JSON_T_STRING }; \
	CHECK(json_check((lit), sizeof(lit) - 1, 1, NULL, NULL) != JSON_SYNTAX); \
	CHECK(json_string_decode(&t_, &b_) == (fl)); \
	CHECK(b_.len == sizeof(want) - 1); \
	CHECK(b_.p != NULL && memcmp(b_.p, (want), sizeof(want)) == 0); \
	buf_free(&b_); \
} while (0)

static void
test_grammar(void)
{
	/* Accepted. */
	CHECK(ST("0") == JSON_OK);
	CHECK(ST("-0") == JSON_OK);
	CHECK(ST("7") == JSON_OK);
	CHECK(ST("-12") == JSON_OK);
	CHECK(ST("1.5") == JSON_OK);
	CHECK(ST("-0.0") == JSON_OK);
	CHECK(ST("1.10") == JSON_OK);
	CHECK(ST("1e5") == JSON_OK);
	CHECK(ST("1E5") == JSON_OK);
	CHECK(ST("1e+5") == JSON_OK);
	CHECK(ST("1e-5") == JSON_OK);
	CHECK(ST("-1.5E-05") == JSON_OK);
	CHECK(ST("0e0") == JSON_OK);
	CHECK(ST("123456789012345678901234567890123456789") == JSON_OK);
	CHECK(ST("1e99999999999") == JSON_OK);
	CHECK(ST("true") == JSON_OK);
	CHECK(ST("false") == JSON_OK);
	CHECK(ST("null") == JSON_OK);
	CHECK(ST("\"\"") == JSON_OK);
	CHECK(ST("\"abc\"") == JSON_OK);
	CHECK(ST("\"\x7f\"") == JSON_OK);
	CHECK(ST("[]") == JSON_OK);
	CHECK(ST("{}") == JSON_OK);
	CHECK(ST("[1,\"a\",true,false,null,{},[]]") == JSON_OK);
	CHECK(ST("{\"a\":1,\"b\":[true,{\"c\":null}],\"a\":2}") == JSON_OK);
	CHECK(ST(" \t\r\n[ 1 , 2 ]\r\n\t ") == JSON_OK);
	CHECK(ST("{ \"a\" : 1 , \"b\" : { } }") == JSON_OK);
	CHECK(ST("[[[]],[[]]]") == JSON_OK);
	CHECK(ST("{\"\":\"\"}") == JSON_OK);

	/* Numbers. */
	EXPECT_AT("01", JSON_SYNTAX, 1);
	EXPECT_AT("-01", JSON_SYNTAX, 2);
	EXPECT_AT("[00]", JSON_SYNTAX, 2);
	EXPECT_AT("2.", JSON_SYNTAX, 2);
	EXPECT_AT("[2.]", JSON_SYNTAX, 3);
	EXPECT_AT("2.e3", JSON_SYNTAX, 2);
	EXPECT_AT(".5", JSON_SYNTAX, 0);
	EXPECT_AT("[-.5]", JSON_SYNTAX, 2);
	EXPECT_AT("+1", JSON_SYNTAX, 0);
	EXPECT_AT("-", JSON_SYNTAX, 1);
	EXPECT_AT("- 1", JSON_SYNTAX, 1);
	EXPECT_AT("--1", JSON_SYNTAX, 1);
	EXPECT_AT("1e", JSON_SYNTAX, 2);
	EXPECT_AT("1e+", JSON_SYNTAX, 3);
	EXPECT_AT("1E-x", JSON_SYNTAX, 3);
	EXPECT_AT("1ee2", JSON_SYNTAX, 2);
	EXPECT_AT("1.2.3", JSON_SYNTAX, 3);
	EXPECT_AT("0x1F", JSON_SYNTAX, 1);
	EXPECT_AT("NaN", JSON_SYNTAX, 0);
	EXPECT_AT("Infinity", JSON_SYNTAX, 0);
	EXPECT_AT("-Infinity", JSON_SYNTAX, 1);
	EXPECT_AT("1 000", JSON_SYNTAX, 2);
	{
		struct json_error e;

		CHECK(json_check("[-0123]", 7, 8, NULL, &e) == JSON_SYNTAX);
		CHECK_STR(e.what, "leading zero in number");
		CHECK(json_check("[1.]", 4, 8, NULL, &e) == JSON_SYNTAX);
		CHECK_STR(e.what, "expected a digit after the decimal point");
		CHECK(json_check("[1", 2, 8, NULL, &e) == JSON_SYNTAX);
		CHECK_STR(e.what, "unexpected end of input");
	}

	/* Literals are exact and lower case. */
	EXPECT_AT("tru", JSON_SYNTAX, 3);
	EXPECT_AT("trux", JSON_SYNTAX, 3);
	EXPECT_AT("True", JSON_SYNTAX, 0);
	EXPECT_AT("nul", JSON_SYNTAX, 3);
	EXPECT_AT("nulll", JSON_SYNTAX, 4);
	EXPECT_AT("falsey", JSON_SYNTAX, 5);
	EXPECT_AT("[fals]", JSON_SYNTAX, 5);
	EXPECT_AT("[truefalse]", JSON_SYNTAX, 5);

	/* Structure. */
	EXPECT_AT("[", JSON_SYNTAX, 1);
	EXPECT_AT("[1", JSON_SYNTAX, 2);
	EXPECT_AT("[1,", JSON_SYNTAX, 3);
	EXPECT_AT("{", JSON_SYNTAX, 1);
	EXPECT_AT("{\"a\"", JSON_SYNTAX, 4);
	EXPECT_AT("{\"a\":", JSON_SYNTAX, 5);
	EXPECT_AT("]", JSON_SYNTAX, 0);
	EXPECT_AT("}", JSON_SYNTAX, 0);
	EXPECT_AT("[1,]", JSON_SYNTAX, 3);
	EXPECT_AT("[,1]", JSON_SYNTAX, 1);
	EXPECT_AT("[1 2]", JSON_SYNTAX, 3);
	EXPECT_AT("[1;2]", JSON_SYNTAX, 2);
	EXPECT_AT("[}", JSON_SYNTAX, 1);
	EXPECT_AT("{]", JSON_SYNTAX, 1);
	EXPECT_AT("[1}", JSON_SYNTAX, 2);
	EXPECT_AT("{\"a\":1]", JSON_SYNTAX, 6);
	EXPECT_AT("{\"a\"}", JSON_SYNTAX, 4);
	EXPECT_AT("{\"a\" 1}", JSON_SYNTAX, 5);
	EXPECT_AT("{\"a\":}", JSON_SYNTAX, 5);
	EXPECT_AT("{,}", JSON_SYNTAX, 1);
	EXPECT_AT("{\"a\":1,}", JSON_SYNTAX, 7);
	EXPECT_AT("{1:2}", JSON_SYNTAX, 1);
	EXPECT_AT("{'a':2}", JSON_SYNTAX, 1);
	EXPECT_AT("{a:2}", JSON_SYNTAX, 1);
	EXPECT_AT("['a']", JSON_SYNTAX, 1);
	EXPECT_AT("[1]]", JSON_SYNTAX, 3);
	EXPECT_AT("{} x", JSON_SYNTAX, 3);
	EXPECT_AT("1 1", JSON_SYNTAX, 2);
	EXPECT_AT("\"a\" \"b\"", JSON_SYNTAX, 4);
	EXPECT_AT("[] /* c */", JSON_SYNTAX, 3);
	EXPECT_AT("[[[[]]]", JSON_SYNTAX, 7);

	/* Whitespace is space, tab, LF, CR only. */
	EXPECT_AT("\f1", JSON_SYNTAX, 0);
	EXPECT_AT("1\f", JSON_SYNTAX, 1);
	EXPECT_AT("[\v]", JSON_SYNTAX, 1);
	EXPECT_AT("[1,\xc2\xa0" "2]", JSON_SYNTAX, 3);	/* U+00A0 */
	EXPECT_AT("\xe2\x81\xa0[]", JSON_SYNTAX, 0);	/* U+2060 */
	EXPECT_AT("[\0]", JSON_SYNTAX, 1);
	EXPECT_AT("[]\0", JSON_SYNTAX, 2);

	/* Empty. */
	EXPECT_AT("", JSON_EMPTY, 0);
	EXPECT_AT(" ", JSON_EMPTY, 1);
	EXPECT_AT(" \t\r\n ", JSON_EMPTY, 5);
	CHECK(json_check(NULL, 0, 10, NULL, NULL) == JSON_EMPTY);

	/* Byte order mark: JSON_SYNTAX at 0, with or without data. */
	EXPECT_AT("\xef\xbb\xbf{}", JSON_SYNTAX, 0);
	EXPECT_AT("\xef\xbb\xbf", JSON_SYNTAX, 0);
	EXPECT_AT("\xef\xbb", JSON_BAD_UTF8, 0);
	EXPECT_AT(" \xef\xbb\xbf{}", JSON_SYNTAX, 1);
	CHECK(ST("[\"\xef\xbb\xbf\"]") == JSON_OK);	/* U+FEFF as data */
}

static void
test_strings(void)
{
	char s[64];
	size_t i;

	/* The eight simple escapes and \u, hex in either case. */
	CHECK(ST("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"") == JSON_OK);
	CHECK(ST("\"\\u0041\\u00e9\\u00E9\\uABCD\\uabcd\"") == JSON_OK);
	CHECK(ST("\"\\u0000\"") == JSON_OK);
	EXPECT_AT("\"\\x41\"", JSON_SYNTAX, 2);
	EXPECT_AT("\"\\'\"", JSON_SYNTAX, 2);
	EXPECT_AT("\"\\a\"", JSON_SYNTAX, 2);
	EXPECT_AT("\"\\U0041\"", JSON_SYNTAX, 2);
	EXPECT_AT("\"\\0\"", JSON_SYNTAX, 2);
	EXPECT_AT("\"\\ \"", JSON_SYNTAX, 2);
	EXPECT_AT("\"\\u12\"", JSON_SYNTAX, 5);
	EXPECT_AT("\"\\u12G4\"", JSON_SYNTAX, 5);
	EXPECT_AT("\"\\u-123\"", JSON_SYNTAX, 3);
	EXPECT_AT("\"\\u00", JSON_SYNTAX, 5);
	EXPECT_AT("\"\\", JSON_SYNTAX, 2);
	EXPECT_AT("\"abc", JSON_SYNTAX, 4);
	EXPECT_AT("[\"abc]", JSON_SYNTAX, 6);
	EXPECT_AT("\"\\\"", JSON_SYNTAX, 3);

	/* Raw control characters U+0000-U+001F; DEL is fine. */
	EXPECT_AT("\"a\x01" "b\"", JSON_SYNTAX, 2);
	EXPECT_AT("\"\t\"", JSON_SYNTAX, 1);
	EXPECT_AT("\"\n\"", JSON_SYNTAX, 1);
	EXPECT_AT("\"\r\"", JSON_SYNTAX, 1);
	EXPECT_AT("\"\x1f\"", JSON_SYNTAX, 1);
	EXPECT_AT("\"a\0\"", JSON_SYNTAX, 2);
	EXPECT_AT("{\"k\x10\":1}", JSON_SYNTAX, 3);
	CHECK(ST("\" \x7f~\"") == JSON_OK);

	/*
	 * Every position of a long string, so that the 8-byte skipping meets
	 * the special byte at each alignment.
	 */
	for (i = 1; i < 40; i++) {
		struct json_error e;

		memset(s, 'a', 41);
		s[0] = '"';
		s[41] = '"';
		s[i] = '\x02';
		CHECK(json_check(s, 42, 4, NULL, &e) == JSON_SYNTAX &&
		    e.offset == i);
		s[i] = '\xff';
		CHECK(json_check(s, 42, 4, NULL, &e) == JSON_BAD_UTF8 &&
		    e.offset == i);
		s[i] = '"';
		CHECK(json_check(s, 42, 4, NULL, &e) == JSON_SYNTAX &&
		    e.offset == i + 1);
		s[i] = '\\';
		CHECK(json_check(s, 42, 4, NULL, &e) == JSON_SYNTAX &&
		    e.offset == i + 1);
		s[i] = '\x7f';
		CHECK(json_check(s, 42, 4, NULL, &e) == JSON_OK);
		s[i] = '\xc3';
		s[i + 1] = '\xa9';
		CHECK(json_check(s, 42, 4, NULL, &e) == JSON_OK);
		CHECK(json_check(s, 41, 4, NULL, &e) == JSON_SYNTAX &&
		    e.offset == 41);
	}
}

static void
test_utf8(void)
{
	/* Well-formed, including the edges of each range. */
	CHECK(ST("\"\xc2\x80\"") == JSON_OK);		/* U+0080 */
	CHECK(ST("\"\xc3\xa9\"") == JSON_OK);		/* U+00E9 */
	CHECK(ST("\"\xdf\xbf\"") == JSON_OK);		/* U+07FF */
	CHECK(ST("\"\xe0\xa0\x80\"") == JSON_OK);	/* U+0800 */
	CHECK(ST("\"\xe2\x82\xac\"") == JSON_OK);	/* U+20AC */
	CHECK(ST("\"\xed\x9f\xbf\"") == JSON_OK);	/* U+D7FF */
	CHECK(ST("\"\xee\x80\x80\"") == JSON_OK);	/* U+E000 */
	CHECK(ST("\"\xef\xbf\xbf\"") == JSON_OK);	/* U+FFFF */
	CHECK(ST("\"\xf0\x90\x80\x80\"") == JSON_OK);	/* U+10000 */
	CHECK(ST("\"\xf0\x9f\x98\x80\"") == JSON_OK);	/* U+1F600 */
	CHECK(ST("\"\xf4\x8f\xbf\xbf\"") == JSON_OK);	/* U+10FFFF */
	CHECK(ST("{\"\xc3\xa9t\xc3\xa9\":\"\xe6\x97\xa5\"}") == JSON_OK);

	/* Ill-formed: offset of the first byte of the bad sequence. */
	EXPECT_AT("\"\x80\"", JSON_BAD_UTF8, 1);		/* lone continuation */
	EXPECT_AT("\"\xbf\"", JSON_BAD_UTF8, 1);
	EXPECT_AT("\"\xc0\xaf\"", JSON_BAD_UTF8, 1);		/* overlong '/' */
	EXPECT_AT("\"\xc1\xbf\"", JSON_BAD_UTF8, 1);		/* overlong */
	EXPECT_AT("\"\xe0\x80\xaf\"", JSON_BAD_UTF8, 1);	/* overlong */
	EXPECT_AT("\"\xe0\x9f\xbf\"", JSON_BAD_UTF8, 1);	/* overlong U+07FF */
	EXPECT_AT("\"\xf0\x80\x80\xaf\"", JSON_BAD_UTF8, 1);	/* overlong */
	EXPECT_AT("\"\xf0\x8f\xbf\xbf\"", JSON_BAD_UTF8, 1);	/* overlong U+FFFF */
	EXPECT_AT("\"\xed\xa0\x80\"", JSON_BAD_UTF8, 1);	/* U+D800 */
	EXPECT_AT("\"\xed\xbf\xbf\"", JSON_BAD_UTF8, 1);	/* U+DFFF */
	EXPECT_AT("\"\xf4\x90\x80\x80\"", JSON_BAD_UTF8, 1);	/* U+110000 */
	EXPECT_AT("\"\xf5\x80\x80\x80\"", JSON_BAD_UTF8, 1);
	EXPECT_AT("\"\xf8\x88\x80\x80\x80\"", JSON_BAD_UTF8, 1);
	EXPECT_AT("\"\xfe\"", JSON_BAD_UTF8, 1);
	EXPECT_AT("\"\xff\"", JSON_BAD_UTF8, 1);
	EXPECT_AT("\"\xc3\"", JSON_BAD_UTF8, 1);		/* truncated */
	EXPECT_AT("\"\xe2\x82\"", JSON_BAD_UTF8, 1);
	EXPECT_AT("\"\xf0\x9f\x98\"", JSON_BAD_UTF8, 1);
	EXPECT_AT("\"\xf0\x9f\x98", JSON_BAD_UTF8, 1);	/* at end of input */
	EXPECT_AT("\"\xe2\x82x\"", JSON_BAD_UTF8, 1);
	EXPECT_AT("[\"ab\xe2\x82\"]", JSON_BAD_UTF8, 4);
	EXPECT_AT("[\"\xc3\xa9\xe9\"]", JSON_BAD_UTF8, 4);	/* Latin-1 */
	EXPECT_AT("{\"a\":1,\"\x81\":2}", JSON_BAD_UTF8, 8);	/* in a key */

	/* Outside strings. */
	EXPECT_AT("\xff", JSON_BAD_UTF8, 0);
	EXPECT_AT("\xff\xfe[\0]\0", JSON_BAD_UTF8, 0);		/* UTF-16LE BOM */
	EXPECT_AT("[\xe9]", JSON_BAD_UTF8, 1);
	EXPECT_AT("[1]\xff", JSON_BAD_UTF8, 3);
	EXPECT_AT("[1]\n\x80", JSON_BAD_UTF8, 4);
	EXPECT_AT("{\xc0\xaf:1}", JSON_BAD_UTF8, 1);
	EXPECT_AT("[1\xff]", JSON_BAD_UTF8, 2);
	EXPECT_AT("[\xc3\xa9]", JSON_SYNTAX, 1);		/* valid, not JSON */
	/* The first problem wins. */
	EXPECT_AT("[1,]\xff", JSON_SYNTAX, 3);
	EXPECT_AT("[\"\xff\", 01]", JSON_BAD_UTF8, 2);

	/* utf8_valid() by the same rules. */
	CHECK(utf8_valid("", 0));
	CHECK(utf8_valid(NULL, 0));
	CHECK(UV("abc"));
	CHECK(UV("a\0b"));
	CHECK(UV("\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"
	    "\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"));
	CHECK(UV("\xef\xbb\xbf{}"));
	CHECK(!UV("\x80"));
	CHECK(!UV("\xc0\xaf"));
	CHECK(!UV("\xc1\xbf"));
	CHECK(!UV("\xe0\x9f\xbf"));
	CHECK(!UV("\xf0\x8f\xbf\xbf"));
	CHECK(!UV("\xed\xa0\x80"));
	CHECK(!UV("\xed\xbf\xbf"));
	CHECK(!UV("\xf4\x90\x80\x80"));
	CHECK(!UV("\xf5\x80\x80\x80"));
	CHECK(!UV("\xff"));
	CHECK(!UV("\xe2\x82"));
	CHECK(!UV("\xf0\x9f\x98"));
	CHECK(!utf8_valid("\xe2\x82\xac", 2));	/* cut by n */
	CHECK(UV("0123456789abcdefghij\xe2\x82\xac"));
	CHECK(!UV("0123456789abcdefghij\xe2\x82"));
	CHECK(!UV("0123456789abcdefghi\xff"));
	CHECK(!UV("0123456789abcdef\xc3\xa9" "0123456789abc\x80" "de"));
	CHECK(UV("0123456789abcdef\xc3\xa9" "0123456789abc" "de"));
}

static void
test_surrogates(void)
{
	CHECK(ST("\"\\uD83D\\uDE00\"") == JSON_OK);
	CHECK(ST("\"\\ud83d\\ude00\"") == JSON_OK);
	CHECK(ST("\"\\uD800\\uDC00\"") == JSON_OK);
	CHECK(ST("\"\\uDBFF\\uDFFF\"") == JSON_OK);
	CHECK(ST("\"\\uD7FF\\uE000\"") == JSON_OK);	/* just outside */
	CHECK(ST("[\"a\\uD834\\uDD1Eb\"]") == JSON_OK);
	EXPECT_AT("\"\\uD800\"", JSON_SURROGATE, 1);
	EXPECT_AT("\"\\uDBFF\"", JSON_SURROGATE, 1);
	EXPECT_AT("\"\\uDC00\"", JSON_SURROGATE, 1);
	EXPECT_AT("\"\\uDFFF\"", JSON_SURROGATE, 1);
	EXPECT_AT("\"ab\\uDFAA\"", JSON_SURROGATE, 3);
	EXPECT_AT("\"\\uD800x\"", JSON_SURROGATE, 1);
	EXPECT_AT("\"\\uD800\\n\"", JSON_SURROGATE, 1);
	EXPECT_AT("\"\\uD800\\u0041\"", JSON_SURROGATE, 1);
	EXPECT_AT("\"\\uD800\\uD800\\uDC00\"", JSON_SURROGATE, 1);
	EXPECT_AT("\"\\uD800\\uE000\"", JSON_SURROGATE, 1);
	EXPECT_AT("\"\\uDE00\\uD83D\"", JSON_SURROGATE, 1);	/* inverted */
	EXPECT_AT("\"\\uD800\\u12\"", JSON_SURROGATE, 1);
	EXPECT_AT("\"\\uD800\\", JSON_SURROGATE, 1);
	EXPECT_AT("\"\\uD800", JSON_SURROGATE, 1);
	EXPECT_AT("\"\\uD800\\uDC0", JSON_SURROGATE, 1);
	EXPECT_AT("{\"\\uDFAA\":0}", JSON_SURROGATE, 2);
	EXPECT_AT("[\"ok\\uD83D\\uDE00\",\"\\uD83D\"]", JSON_SURROGATE, 19);
}

/* "[[[...]]]" or "{"a":{"a":...0}}" of the given depth, in a malloc'd buffer. */
static char *
nest(size_t depth, int objects, size_t *lenp)
{
	size_t i, len = depth * (objects ? 6 : 2) + 1;
	char *s, *p;

	if ((s = malloc(len + 1)) == NULL) {
		perror("malloc");
		exit(2);
	}
	p = s;
	for (i = 0; i < depth; i++) {
		if (objects) {
			memcpy(p, "{\"a\":", 5);
			p += 5;
		} else
			*p++ = '[';
	}
	*p++ = '0';
	for (i = 0; i < depth; i++)
		*p++ = objects ? '}' : ']';
	*p = '\0';
	*lenp = (size_t)(p - s);
	return s;
}

/* Alternating "[{"a":[{"a":...0}]}]" of 2 * pairs levels. */
static char *
nest_mixed(size_t pairs, size_t *lenp)
{
	size_t i;
	char *s, *p;

	if ((s = malloc(pairs * 8 + 2)) == NULL) {
		perror("malloc");
		exit(2);
	}
	p = s;
	for (i = 0; i < pairs; i++) {
		memcpy(p, "[{\"a\":", 6);
		p += 6;
	}
	*p++ = '0';
	for (i = 0; i < pairs; i++) {
		*p++ = '}';
		*p++ = ']';
	}
	*p = '\0';
	*lenp = (size_t)(p - s);
	return s;
}

static void
test_depth(void)
{
	struct json_error e;
	size_t len;
	char *s;

	s = nest(1000, 0, &len);
	CHECK(json_check(s, len, 1000, NULL, &e) == JSON_OK);
	CHECK(json_check(s, len, 999, NULL, &e) == JSON_TOO_DEEP &&
	    e.offset == 999);
	free(s);
	s = nest(1001, 0, &len);
	CHECK(json_check(s, len, 1000, NULL, &e) == JSON_TOO_DEEP);
	CHECK(e.offset == 1000);
	CHECK(strcmp(json_status_code(e.status), "too_deep") == 0);
	CHECK(json_check(s, len, 1001, NULL, &e) == JSON_OK);
	free(s);
	s = nest(1000, 1, &len);
	CHECK(json_check(s, len, 1000, NULL, &e) == JSON_OK);
	free(s);
	s = nest(1001, 1, &len);
	CHECK(json_check(s, len, 1000, NULL, &e) == JSON_TOO_DEEP &&
	    e.offset == 5000);
	free(s);

	/* {} is depth 1; max_depth <= 0 admits scalars only. */
	CHECK(json_check("{}", 2, 1, NULL, NULL) == JSON_OK);
	CHECK(json_check("[]", 2, 1, NULL, NULL) == JSON_OK);
	CHECK(json_check("[[]]", 4, 1, NULL, &e) == JSON_TOO_DEEP &&
	    e.offset == 1);
	CHECK(json_check("[{}]", 4, 2, NULL, NULL) == JSON_OK);
	CHECK(json_check("[1,[2],{\"a\":[3]}]", 17, 2, NULL, &e) ==
	    JSON_TOO_DEEP && e.offset == 12);
	CHECK(json_check("1", 1, 0, NULL, NULL) == JSON_OK);
	CHECK(json_check("\"x\"", 3, -7, NULL, NULL) == JSON_OK);
	CHECK(json_check("[]", 2, 0, NULL, &e) == JSON_TOO_DEEP &&
	    e.offset == 0);
	CHECK(json_check("{}", 2, INT_MIN, NULL, NULL) == JSON_TOO_DEEP);
	/* A syntax error before the limit is reached is reported as such. */
	CHECK(json_check("[[1,]]", 6, 1, NULL, &e) == JSON_TOO_DEEP);
	CHECK(json_check("[1,][[", 6, 1, NULL, &e) == JSON_SYNTAX &&
	    e.offset == 3);

	/* Past the on-stack levels: the one heap block. */
	s = nest(100000, 0, &len);
	CHECK(json_check(s, len, 100000, NULL, NULL) == JSON_OK);
	CHECK(json_check(s, len, INT_MAX, NULL, NULL) == JSON_OK);
	CHECK(json_check(s, len, 99999, NULL, &e) == JSON_TOO_DEEP &&
	    e.offset == 99999);
	CHECK(json_check(s, len - 1, INT_MAX, NULL, &e) == JSON_SYNTAX &&
	    e.offset == len - 1);
	free(s);
	s = nest_mixed(20000, &len);
	CHECK(json_check(s, len, 40000, NULL, NULL) == JSON_OK);
	CHECK(json_check(s, len, 39999, NULL, &e) == JSON_TOO_DEEP &&
	    e.offset == 20000 * 6 - 6 + 1);
	/* Swap the innermost "}]": the bit stack must notice. */
	s[20000 * 6 + 1] = ']';
	s[20000 * 6 + 2] = '}';
	CHECK(json_check(s, len, INT_MAX, NULL, &e) == JSON_SYNTAX &&
	    e.offset == 20000 * 6 + 1);
	/* And near the outermost end, after all levels were popped back. */
	s[20000 * 6 + 1] = '}';
	s[20000 * 6 + 2] = ']';
	s[len - 2] = ']';
	CHECK(json_check(s, len, INT_MAX, NULL, &e) == JSON_SYNTAX &&
	    e.offset == len - 2);
	free(s);
}

static void
test_spans(void)
{
	static const char text[] = " \t{\"n\":12345678901234567890123,"
	    "\"f\":1.10,\"e\":-0.0e+00} \n";
	static const char *const tops[] = {
		"{}", "[]", "\"s\"", "-1.10", "true", "false", "null"
	};
	static const enum json_type types[] = {
		JSON_T_OBJECT, JSON_T_ARRAY, JSON_T_STRING, JSON_T_NUMBER,
		JSON_T_TRUE, JSON_T_FALSE, JSON_T_NULL
	};
	struct json_span v;
	struct json_error e;
	size_t i;
	char pad[32];

	CHECK(json_check(text, sizeof(text) - 1, 8, &v, &e) == JSON_OK);
	CHECK(e.status == JSON_OK);
	CHECK(v.start == text + 2);
	CHECK(v.len == sizeof(text) - 1 - 4);
	CHECK(v.type == JSON_T_OBJECT);

	CHECK(json_check(" 1.10 ", 6, 1, &v, NULL) == JSON_OK);
	CHECK(v.len == 4 && memcmp(v.start, "1.10", 4) == 0);
	CHECK(v.type == JSON_T_NUMBER);
	CHECK(json_check("123456789012345678901234567890", 30, 1, &v,
	    NULL) == JSON_OK);
	CHECK(v.len == 30 && v.type == JSON_T_NUMBER);

	for (i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
		snprintf(pad, sizeof(pad), "\r\n%s\t", tops[i]);
		CHECK(json_check(pad, strlen(pad), 1, &v, NULL) == JSON_OK);
		CHECK(v.start == pad + 2);
		CHECK(v.len == strlen(tops[i]));
		CHECK(v.type == types[i]);
	}

	/* *value is left alone when the text is not JSON. */
	v.start = NULL;
	v.len = 77;
	CHECK(json_check("[1,]", 4, 8, &v, NULL) == JSON_SYNTAX);
	CHECK(v.start == NULL && v.len == 77);
	CHECK(json_check_object("[1,]", 4, 8, &v, NULL) == JSON_SYNTAX);
	CHECK(v.start == NULL && v.len == 77);

	/* json_check_object(). */
	CHECK(json_check_object(" {\"a\":[]} ", 10, 8, &v, &e) == JSON_OK);
	CHECK(v.len == 8 && v.type == JSON_T_OBJECT);
	CHECK(json_check_object(" [1] ", 5, 8, &v, &e) == JSON_NOT_OBJECT);
	CHECK(e.status == JSON_NOT_OBJECT && e.offset == 1);
	CHECK(v.type == JSON_T_ARRAY && v.len == 3);
	CHECK(json_check_object("\"{}\"", 4, 8, NULL, &e) ==
	    JSON_NOT_OBJECT && e.offset == 0);
	CHECK(json_check_object("1", 1, 8, NULL, NULL) == JSON_NOT_OBJECT);
	CHECK(json_check_object("null", 4, 8, NULL, NULL) ==
	    JSON_NOT_OBJECT);
	CHECK(json_check_object("", 0, 8, NULL, &e) == JSON_EMPTY);
	CHECK(json_check_object("  ", 2, 8, NULL, &e) == JSON_EMPTY);
	CHECK(json_check_object("{", 1, 8, NULL, &e) == JSON_SYNTAX);
	CHECK(json_check_object("[\"\xff\"]", 5, 8, NULL, &e) ==
	    JSON_BAD_UTF8 && e.offset == 2);
	CHECK(json_check_object("{\"\\uDC00\":1}", 12, 8, NULL, &e) ==
	    JSON_SURROGATE);
	CHECK(json_check_object("{\"a\":{}}", 8, 1, NULL, &e) ==
	    JSON_TOO_DEEP && e.offset == 5);
	CHECK(json_check_object("[{}]", 4, 1, NULL, &e) == JSON_TOO_DEEP);
}

static void
test_codes(void)
{
	CHECK_STR(json_status_code(JSON_OK), "ok");
	CHECK_STR(json_status_code(JSON_EMPTY), "empty_body");
	CHECK_STR(json_status_code(JSON_SYNTAX), "invalid_json");
	CHECK_STR(json_status_code(JSON_BAD_UTF8), "invalid_utf8");
	CHECK_STR(json_status_code(JSON_SURROGATE), "unpaired_surrogate");
	CHECK_STR(json_status_code(JSON_TOO_DEEP), "too_deep");
	CHECK_STR(json_status_code(JSON_NOT_OBJECT), "not_object");
}

struct member {
	char key[32];
	char val[64];
	enum json_type type;
};

struct members {
	struct member m[16];
	int n;
	int stop_at;		/* return 42 on this member (1-based), 0: never */
};

static int
collect(const struct json_span *key, const struct json_span *value,
    void *arg)
{
	struct members *ms = arg;
	struct member *m;

	if (ms->n >= 16)
		return -1;
	m = &ms->m[ms->n++];
	snprintf(m->key, sizeof(m->key), "%.*s", (int)key->len, key->start);
	snprintf(m->val, sizeof(m->val), "%.*s", (int)value->len,
	    value->start);
	m->type = value->type;
	if (key->type != JSON_T_STRING)
		return -2;
	return ms->n == ms->stop_at ? 42 : 0;
}

static int
find_event(const struct json_span *key, const struct json_span *value,
    void *arg)
{
	(void)value;
	if (json_string_equals(key, "event")) {
		(*(int *)arg)++;
	}
	return 0;
}

static void
test_object_each(void)
{
	static const char text[] = " { \"a\" : 1 , \"a\":2,"
	    "\"b\\u0022\\\\\":{\"x\":[1,{\"y\":\"}]\\\"\"}]},"
	    "\"c\":\"q\\\"}\",\"d\":-1.10e5,\"e\":true,\"f\":null,"
	    "\"g\":[ ],\"h\":123456789012345678901234567890,"
	    "\"\\u0065vent\":\"x\",\"event\":{}}\n";
	struct members ms;
	struct json_span v;
	struct buf b = BUF_INIT;
	int count = 0;

	memset(&ms, 0, sizeof(ms));
	CHECK(json_check_object(text, sizeof(text) - 1, 8, &v, NULL) ==
	    JSON_OK);
	CHECK(json_object_each(&v, collect, &ms) == 0);
	CHECK(ms.n == 11);
	CHECK_STR(ms.m[0].key, "\"a\"");
	CHECK_STR(ms.m[0].val, "1");
	CHECK(ms.m[0].type == JSON_T_NUMBER);
	CHECK_STR(ms.m[1].key, "\"a\"");	/* duplicates visited in order */
	CHECK_STR(ms.m[1].val, "2");
	CHECK_STR(ms.m[2].key, "\"b\\u0022\\\\\"");
	CHECK_STR(ms.m[2].val, "{\"x\":[1,{\"y\":\"}]\\\"\"}]}");
	CHECK(ms.m[2].type == JSON_T_OBJECT);
	CHECK_STR(ms.m[3].val, "\"q\\\"}\"");
	CHECK(ms.m[3].type == JSON_T_STRING);
	CHECK_STR(ms.m[4].val, "-1.10e5");
	CHECK(ms.m[4].type == JSON_T_NUMBER);
	CHECK_STR(ms.m[5].val, "true");
	CHECK(ms.m[5].type == JSON_T_TRUE);
	CHECK_STR(ms.m[6].val, "null");
	CHECK(ms.m[6].type == JSON_T_NULL);
	CHECK_STR(ms.m[7].val, "[ ]");
	CHECK(ms.m[7].type == JSON_T_ARRAY);
	CHECK_STR(ms.m[8].val, "123456789012345678901234567890");
	CHECK_STR(ms.m[9].key, "\"\\u0065vent\"");
	CHECK_STR(ms.m[10].val, "{}");

	/* An escaped key compares and decodes by its meaning. */
	{
		struct json_span k = { ms.m[2].key, strlen(ms.m[2].key),
		    JSON_T_STRING };
		CHECK(json_string_equals(&k, "b\"\\"));
		CHECK(!json_string_equals(&k, "b\""));
		CHECK(json_string_decode(&k, &b) == 0);
		CHECK_STR(b.p, "b\"\\");
	}
	CHECK(json_object_each(&v, find_event, &count) == 0);
	CHECK(count == 2);

	/* The callback stops the walk and its value comes back. */
	memset(&ms, 0, sizeof(ms));
	ms.stop_at = 2;
	CHECK(json_object_each(&v, collect, &ms) == 42);
	CHECK(ms.n == 2);

	/* Empty objects and non-objects visit nothing. */
	memset(&ms, 0, sizeof(ms));
	CHECK(json_check(" { \t} ", 6, 8, &v, NULL) == JSON_OK);
	CHECK(json_object_each(&v, collect, &ms) == 0 && ms.n == 0);
	CHECK(json_check("[1,2]", 5, 8, &v, NULL) == JSON_OK);
	CHECK(json_object_each(&v, collect, &ms) == 0 && ms.n == 0);
	/* A cut-short span stops without reading past its end. */
	CHECK(json_check("{\"a\":1,\"b\":\"xyz\"}", 17, 8, &v, NULL) ==
	    JSON_OK);
	v.len = 14;
	CHECK(json_object_each(&v, collect, &ms) == 0 && ms.n == 1);
	buf_free(&b);
}

static void
test_decode(void)
{
	struct buf b = BUF_INIT, small;
	struct json_span t;

	EXPECT_DEC("\"abc\"", "abc", 0);
	EXPECT_DEC("\"\"", "", 0);
	EXPECT_DEC("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 0);
	EXPECT_DEC("\"\\u0041\\u00e9\\u20AC\\uFFFF\"",
	    "A\xc3\xa9\xe2\x82\xac\xef\xbf\xbf", 0);
	EXPECT_DEC("\"x\\uD83D\\uDE00y\"", "x\xf0\x9f\x98\x80y", 0);
	EXPECT_DEC("\"\\ud800\\udc00\\uDBFF\\uDFFF\"",
	    "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 0);
	EXPECT_DEC("\"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\"",
	    "\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80", 0);
	EXPECT_DEC("\"a\\u0000b\"", "a\0b", JSON_STR_HAS_NUL);
	EXPECT_DEC("\"\\u0000\"", "\0", JSON_STR_HAS_NUL);
	EXPECT_DEC("\"\\uD800\"", "\xef\xbf\xbd", JSON_STR_HAS_SURROGATE);
	EXPECT_DEC("\"\\uDC00x\"", "\xef\xbf\xbdx", JSON_STR_HAS_SURROGATE);
	EXPECT_DEC("\"\\uD800\\uD800\\uDC00\"", "\xef\xbf\xbd\xf0\x90\x80\x80",
	    JSON_STR_HAS_SURROGATE);
	EXPECT_DEC("\"\\uDE00\\uD83D\"", "\xef\xbf\xbd\xef\xbf\xbd",
	    JSON_STR_HAS_SURROGATE);
	EXPECT_DEC("\"\\uD800\\n\"", "\xef\xbf\xbd\n", JSON_STR_HAS_SURROGATE);
	EXPECT_DEC("\"\\uD800\\u0000\"", "\xef\xbf\xbd\0",
	    JSON_STR_HAS_SURROGATE | JSON_STR_HAS_NUL);

	/* The NUL is inside len, and a terminating NUL follows. */
	t.start = "\"a\\u0000\"";
	t.len = 9;
	t.type = JSON_T_STRING;
	CHECK(json_string_decode(&t, &b) == JSON_STR_HAS_NUL);
	CHECK(b.len == 2 && b.p[0] == 'a' && b.p[1] == '\0' && b.p[2] == '\0');

	/* out is reset first. */
	buf_puts(&b, "junk");
	t.start = "\"ok\"";
	t.len = 4;
	CHECK(json_string_decode(&t, &b) == 0);
	CHECK_STR(b.p, "ok");

	/* Not a string token. */
	t.start = "123";
	t.len = 3;
	t.type = JSON_T_NUMBER;
	CHECK(json_string_decode(&t, &b) == -1);
	t.start = "\"ok\"";
	t.len = 4;
	CHECK(json_string_decode(&t, &b) == -1);	/* type says number */
	t.type = JSON_T_STRING;
	t.len = 3;
	CHECK(json_string_decode(&t, &b) == -1);	/* no closing quote */
	t.start = "\"";
	t.len = 1;
	CHECK(json_string_decode(&t, &b) == -1);
	t.start = "\"\\\"";
	t.len = 3;
	CHECK(json_string_decode(&t, &b) == -1);	/* cut escape */
	t.start = "\"\\u12\"";
	t.len = 6;
	CHECK(json_string_decode(&t, &b) == -1);
	CHECK(json_string_decode(NULL, &b) == -1);

	/* The ceiling. */
	buf_init(&small, 4);
	t.start = "\"abcdefgh\"";
	t.len = 10;
	CHECK(json_string_decode(&t, &small) == -1);
	CHECK(small.failed);
	t.start = "\"\\u20ac\"";
	t.len = 8;
	CHECK(json_string_decode(&t, &small) == 0);	/* 3 bytes fit */
	CHECK_STR(small.p, "\xe2\x82\xac");
	buf_free(&small);
	buf_free(&b);
}

static void
test_equals(void)
{
	static const struct {
		const char *tok;
		const char *want;
		int eq;
	} cases[] = {
		{ "\"event\"", "event", 1 },
		{ "\"\\u0065vent\"", "event", 1 },
		{ "\"\\u0065\\u0076\\u0065\\u006E\\u0074\"", "event", 1 },
		{ "\"event\"", "even", 0 },
		{ "\"event\"", "events", 0 },
		{ "\"even\"", "event", 0 },
		{ "\"Event\"", "event", 0 },
		{ "\"\"", "", 1 },
		{ "\"\"", "a", 0 },
		{ "\"a\"", "", 0 },
		{ "\"a\\u0000\"", "a", 0 },
		{ "\"\\u0000\"", "", 0 },
		/* The decoded NUL must not be taken for the end of want. */
		{ "\"a\\u0000x\"", "a\0x", 0 },
		{ "\"\\/\\\"\\\\\\n\"", "/\"\\\n", 1 },
		{ "\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 1 },
		{ "\"\\u00e9t\\u00E9\"", "\xc3\xa9t\xc3\xa9", 1 },
		{ "\"\xc3\xa9t\xc3\xa9\"", "\xc3\xa9t\xc3\xa9", 1 },
		{ "\"\\u00e9\"", "\xc3", 0 },
		{ "\"\\uD800\"", "\xef\xbf\xbd", 1 },	/* as decoded */
		{ "\"\\u12\"", "\x12", 0 },
	};
	struct json_span t;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		t.start = cases[i].tok;
		t.len = strlen(cases[i].tok);
		t.type = JSON_T_STRING;
		if (json_string_equals(&t, cases[i].want) != cases[i].eq) {
			fprintf(stderr, "json_string_equals(%s, \"%s\") != %d\n",
			    cases[i].tok, cases[i].want, cases[i].eq);
			CHECK(!"json_string_equals");
		} else
			CHECK(1);
	}
	t.start = "event";
	t.len = 5;
	CHECK(!json_string_equals(&t, "event"));
	t.start = "\"event\"";
	t.len = 7;
	t.type = JSON_T_NUMBER;
	CHECK(!json_string_equals(&t, "event"));
	t.type = JSON_T_STRING;
	CHECK(!json_string_equals(&t, NULL));
	CHECK(!json_string_equals(NULL, "event"));
}

static void
test_escape(void)
{
	struct buf b = BUF_INIT;

	EXPECT_ESC("", "\"\"");
	EXPECT_ESC("abc", "\"abc\"");
	EXPECT_ESC("a\"b\\c/d", "\"a\\\"b\\\\c/d\"");
	EXPECT_ESC("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"");
	EXPECT_ESC("\x01\x0b\x1f\x7f", "\"\\u0001\\u000b\\u001f\x7f\"");
	EXPECT_ESC("a\0b", "\"a\\ufffdb\"");
	EXPECT_ESC("\0", "\"\\ufffd\"");
	EXPECT_ESC("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf",
	    "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"");
	EXPECT_ESC("\xef\xbb\xbf", "\"\xef\xbb\xbf\"");
	/* One \ufffd per maximal invalid subsequence. */
	EXPECT_ESC("\xff", "\"\\ufffd\"");
	EXPECT_ESC("\x80\x80", "\"\\ufffd\\ufffd\"");
	EXPECT_ESC("\xc0\xaf", "\"\\ufffd\\ufffd\"");
	EXPECT_ESC("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");
	EXPECT_ESC("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");
	EXPECT_ESC("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
	EXPECT_ESC("\xe2\x82", "\"\\ufffd\"");
	EXPECT_ESC("\xe2\x82x", "\"\\ufffdx\"");
	EXPECT_ESC("\xf0\x9f\x98", "\"\\ufffd\"");
	EXPECT_ESC("\xf0\x9f\x98\x80\x80", "\"\xf0\x9f\x98\x80\\ufffd\"");
	EXPECT_ESC("\xe2\x82\xe2\x82\xac", "\"\\ufffd\xe2\x82\xac\"");
	EXPECT_ESC("caf\xe9 ok", "\"caf\\ufffd ok\"");
	EXPECT_ESC("0123456789abcdef\"0123456789abcdef\xff\x01",
	    "\"0123456789abcdef\\\"0123456789abcdef\\ufffd\\u0001\"");

	/* Appends after what out holds. */
	buf_puts(&b, "k=");
	CHECK(json_escape(&b, "v\n", 2) == 0);
	CHECK_STR(b.p, "k=\"v\\n\"");
	CHECK(json_escape(&b, NULL, 0) == 0);
	CHECK_STR(b.p, "k=\"v\\n\"\"\"");
	buf_free(&b);

	/* All or nothing at the ceiling. */
	buf_init(&b, 8);
	buf_puts(&b, "k=");
	CHECK(json_escape(&b, "abcdef", 6) == -1);
	CHECK(b.failed);
	CHECK(b.len == 2);
	CHECK_STR(b.p, "k=");
	buf_reset(&b);
	CHECK(json_escape(&b, "abcdef", 6) == 0);
	CHECK_STR(b.p, "\"abcdef\"");
	buf_reset(&b);
	CHECK(json_escape(&b, "\xff\xff", 2) == -1);
	CHECK(b.len == 0 && b.p[0] == '\0');
	buf_free(&b);
}

/* --- JSONTestSuite replay --- */

static int
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
read_file(const char *path, struct buf *out)
{
	char chunk[65536];
	size_t n;
	FILE *f;

	buf_reset(out);
	if ((f = fopen(path, "rb")) == NULL)
		return -1;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (buf_append(out, chunk, n) < 0)
			break;
	if (ferror(f) || out->failed) {
		fclose(f);
		return -1;
	}
	fclose(f);
	/* Empty files still get a non-NULL p. */
	return buf_append(out, "", 0);
}

/*
 * What our rules say about each implementation-defined case; a new i_
 * file in the corpus fails the test until it is added here.
 */
static const struct {
	const char *name;
	enum json_status st;
} i_expect[] = {
	/* Huge numbers are valid grammar; we never convert them. */
	{ "i_number_double_huge_neg_exp.json", JSON_OK },
	{ "i_number_huge_exp.json", JSON_OK },
	{ "i_number_neg_int_huge_exp.json", JSON_OK },
	{ "i_number_pos_double_huge_exp.json", JSON_OK },
	{ "i_number_real_neg_overflow.json", JSON_OK },
	{ "i_number_real_pos_overflow.json", JSON_OK },
	{ "i_number_real_underflow.json", JSON_OK },
	{ "i_number_too_big_neg_int.json", JSON_OK },
	{ "i_number_too_big_pos_int.json", JSON_OK },
	{ "i_number_very_big_negative_int.json", JSON_OK },
	/* Unpaired surrogate escapes. */
	{ "i_object_key_lone_2nd_surrogate.json", JSON_SURROGATE },
	{ "i_string_1st_surrogate_but_2nd_missing.json", JSON_SURROGATE },
	{ "i_string_1st_valid_surrogate_2nd_invalid.json", JSON_SURROGATE },
	{ "i_string_incomplete_surrogate_and_escape_valid.json",
	    JSON_SURROGATE },
	{ "i_string_incomplete_surrogate_pair.json", JSON_SURROGATE },
	{ "i_string_incomplete_surrogates_escape_valid.json", JSON_SURROGATE },
	{ "i_string_invalid_lonely_surrogate.json", JSON_SURROGATE },
	{ "i_string_invalid_surrogate.json", JSON_SURROGATE },
	{ "i_string_inverted_surrogates_U+1D11E.json", JSON_SURROGATE },
	{ "i_string_lone_second_surrogate.json", JSON_SURROGATE },
	/* Invalid UTF-8. */
	{ "i_string_UTF-16LE_with_BOM.json", JSON_BAD_UTF8 },
	{ "i_string_UTF-8_invalid_sequence.json", JSON_BAD_UTF8 },
	{ "i_string_UTF8_surrogate_U+D800.json", JSON_BAD_UTF8 },
	{ "i_string_invalid_utf-8.json", JSON_BAD_UTF8 },
	{ "i_string_iso_latin_1.json", JSON_BAD_UTF8 },
	{ "i_string_lone_utf8_continuation_byte.json", JSON_BAD_UTF8 },
	{ "i_string_not_in_unicode_range.json", JSON_BAD_UTF8 },
	{ "i_string_overlong_sequence_2_bytes.json", JSON_BAD_UTF8 },
	{ "i_string_overlong_sequence_6_bytes.json", JSON_BAD_UTF8 },
	{ "i_string_overlong_sequence_6_bytes_null.json", JSON_BAD_UTF8 },
	{ "i_string_truncated-utf-8.json", JSON_BAD_UTF8 },
	/* UTF-16 without BOM: a NUL byte is not JSON. */
	{ "i_string_utf16BE_no_BOM.json", JSON_SYNTAX },
	{ "i_string_utf16LE_no_BOM.json", JSON_SYNTAX },
	/* 500 levels are within 1000. */
	{ "i_structure_500_nested_arrays.json", JSON_OK },
	/* No BOM. */
	{ "i_structure_UTF-8_BOM_empty_object.json", JSON_SYNTAX },
};

struct replay {
	int y, y_ok, n, n_rejected, i, i_known, i_ok, objects;
	int i_seen[sizeof(i_expect) / sizeof(i_expect[0])];
};

static int
check_member(const struct json_span *key, const struct json_span *value,
    void *arg)
{
	struct json_span v;
	struct buf b = BUF_INIT;

	(*(int *)arg)++;
	/* Each piece is itself a JSON text of the type the span claims. */
	CHECK(json_check(key->start, key->len, 1, &v, NULL) == JSON_OK &&
	    v.type == JSON_T_STRING && v.len == key->len);
	CHECK(json_string_decode(key, &b) >= 0);
	if (b.len > 0 && memchr(b.p, '\0', b.len) == NULL)
		CHECK(json_string_equals(key, b.p));
	CHECK(json_check(value->start, value->len, 1000, &v, NULL) ==
	    JSON_OK && v.type == value->type && v.len == value->len);
	buf_free(&b);
	return 0;
}

/* Properties of json_escape(), json_string_decode() on arbitrary bytes. */
static void
roundtrip(const char *name, const struct buf *data)
{
	struct buf esc = BUF_INIT, dec = BUF_INIT;
	struct json_span v;
	int clean, ok = 1;

	clean = utf8_valid(data->p, data->len) &&
	    memchr(data->p, '\0', data->len) == NULL;
	ok &= json_escape(&esc, data->p, data->len) == 0;
	ok &= json_check(esc.p, esc.len, 1, &v, NULL) == JSON_OK &&
	    v.type == JSON_T_STRING;
	ok &= utf8_valid(esc.p, esc.len);
	if (clean) {
		ok &= json_string_decode(&v, &dec) == 0;
		ok &= dec.len == data->len &&
		    memcmp(dec.p, data->p, data->len) == 0;
		ok &= json_string_equals(&v, data->p);
	} else
		ok &= json_string_decode(&v, &dec) == 0;
	if (!ok)
		fprintf(stderr, "roundtrip failed: %s\n", name);
	CHECK(ok);
	buf_free(&esc);
	buf_free(&dec);
}

static void
replay_one(const char *dir, const char *name, struct replay *r)
{
	struct buf data = BUF_INIT;
	struct json_error e;
	struct json_span v;
	enum json_status st, ost;
	char path[4096];
	size_t k, first;
	int members;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    sizeof(path) || read_file(path, &data) < 0) {
		fprintf(stderr, "cannot read %s\n", path);
		CHECK(!"read corpus file");
		buf_free(&data);
		return;
	}
	st = json_check(data.p, data.len, 1000, &v, &e);
	ost = json_check_object(data.p, data.len, 1000, NULL, NULL);

	/* Invalid UTF-8 anywhere is never accepted. */
	if (!utf8_valid(data.p, data.len))
		CHECK(st != JSON_OK);
	/* json_check_object() adds JSON_NOT_OBJECT and nothing else. */
	if (st != JSON_OK)
		CHECK(ost == st);
	else if (v.type == JSON_T_OBJECT)
		CHECK(ost == JSON_OK);
	else
		CHECK(ost == JSON_NOT_OBJECT);
	if (st != JSON_OK)
		CHECK(e.offset <= data.len && e.what != NULL);
	if (st == JSON_OK) {
		/* The span is the text without surrounding whitespace. */
		first = (size_t)(v.start - data.p);
		for (k = 0; k < first; k++)
			CHECK(is_ws(data.p[k]));
		for (k = first + v.len; k < data.len; k++)
			CHECK(is_ws(data.p[k]));
	}
	if (ost == JSON_OK) {
		r->objects++;
		CHECK(strncmp(name, "y_object", 8) == 0);
		members = 0;
		CHECK(json_object_each(&v, check_member, &members) == 0);
		CHECK(members > 0 || v.len == 2);
	}

	if (name[0] == 'y') {
		r->y++;
		if (st == JSON_OK)
			r->y_ok++;
		else
			fprintf(stderr, "%s: %s at %zu (%s)\n", name,
			    json_status_code(st), e.offset, e.what);
		CHECK(st == JSON_OK);
		if (strncmp(name, "y_object", 8) == 0)
			CHECK(ost == JSON_OK);
	} else if (name[0] == 'n') {
		r->n++;
		if (st != JSON_OK)
			r->n_rejected++;
		else
			fprintf(stderr, "%s: accepted\n", name);
		CHECK(st != JSON_OK);
	} else if (name[0] == 'i') {
		r->i++;
		if (st == JSON_OK)
			r->i_ok++;
		for (k = 0; k < sizeof(i_expect) / sizeof(i_expect[0]); k++)
			if (strcmp(i_expect[k].name, name) == 0)
				break;
		if (k == sizeof(i_expect) / sizeof(i_expect[0])) {
			fprintf(stderr, "%s: no expectation recorded, got %s\n",
			    name, json_status_code(st));
			CHECK(!"i_ file without expectation");
		} else {
			r->i_known++;
			r->i_seen[k] = 1;
			if (st != i_expect[k].st)
				fprintf(stderr, "%s: got %s, want %s\n", name,
				    json_status_code(st),
				    json_status_code(i_expect[k].st));
			CHECK(st == i_expect[k].st);
		}
		if (st == JSON_OK)
			printf("  %-52s ok\n", name);
		else
			printf("  %-52s %s at %zu (%s)\n", name,
			    json_status_code(st), e.offset, e.what);
	}
	roundtrip(name, &data);
	buf_free(&data);
}

static void
replay_corpus(const char *dir)
{
	struct replay r;
	struct dirent *de;
	char **names = NULL, **grown;
	size_t n = 0, cap = 0, k;
	DIR *d;

	memset(&r, 0, sizeof(r));
	if ((d = opendir(dir)) == NULL) {
		perror(dir);
		CHECK(!"open corpus directory");
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) < 3 || de->d_name[1] != '_' ||
		    strchr("yni", de->d_name[0]) == NULL)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 512;
			if ((grown = realloc(names, cap * sizeof(*names))) ==
			    NULL) {
				perror("realloc");
				exit(2);
			}
			names = grown;
		}
		if ((names[n] = strdup(de->d_name)) == NULL) {
			perror("strdup");
			exit(2);
		}
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_names);

	printf("i_ files (implementation-defined), max_depth 1000:\n");
	for (k = 0; k < n; k++) {
		replay_one(dir, names[k], &r);
		free(names[k]);
	}
	free(names);

	for (k = 0; k < sizeof(i_expect) / sizeof(i_expect[0]); k++)
		if (!r.i_seen[k]) {
			fprintf(stderr, "%s: missing from the corpus\n",
			    i_expect[k].name);
			CHECK(!"expected i_ file missing");
		}
	printf("corpus %s: y %d/%d accepted, n %d/%d rejected, "
	    "i %d accepted of %d, %d objects\n", dir, r.y_ok, r.y,
	    r.n_rejected, r.n, r.i_ok, r.i, r.objects);
	/* The corpus is really there, not an empty directory. */
	CHECK(r.y >= 95 && r.n >= 188 && r.i >= 35);
	CHECK(r.objects == 12);
}

int
main(int argc, char **argv)
{
	test_grammar();
	test_strings();
	test_utf8();
	test_surrogates();
	test_depth();
	test_spans();
	test_codes();
	test_object_each();
	test_decode();
	test_equals();
	test_escape();
	replay_corpus(argc > 1 ? argv[1] : DEFAULT_CORPUS);
	return check_done("test_json");
}
