/* Unit tests of common/envelope.c, common/uuid.c and common/lines.c. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "envelope.h"
#include "lines.h"
#include "uuid.h"

static void
test_uuid(void)
{
	char a[UUID_LEN + 1], b[UUID_LEN + 1], c[UUID_LEN + 1];

	CHECK(uuid_v7(a) == 0);
	CHECK(strlen(a) == UUID_LEN);
	CHECK(a[14] == '7');
	CHECK(strchr("89ab", a[19]) != NULL);
	for (int i = 0; i < 10000; i++) {
		CHECK(uuid_v7(b) == 0);
		if (strcmp(a, b) >= 0) {
			CHECK(!"uuid_v7 not increasing");
			break;
		}
		memcpy(a, b, sizeof a);
	}
	CHECK(uuid_canonical("0190F0E2-1C3B-7ABC-8DEF-0123456789AB", 36, c) == 0);
	CHECK_STR(c, "0190f0e2-1c3b-7abc-8def-0123456789ab");
	CHECK(uuid_canonical("0190f0e21c3b7abc8def0123456789ab", 32, c) < 0);
	CHECK(uuid_canonical("{0190f0e2-1c3b-7abc-8def-0123456789a}", 37, c) < 0);
	CHECK(uuid_canonical("0190f0e2-1c3b-7abc-8def-0123456789ag", 36, c) < 0);
	CHECK(uuid_canonical("0190f0e2+1c3b-7abc-8def-0123456789ab", 36, c) < 0);
	CHECK(uuid_canonical("0190f0e2-1c3b-7abc-8def-0123456789a", 35, c) < 0);

	{
		static const unsigned char want[16] = {
			0x01, 0x90, 0xf0, 0xe2, 0x1c, 0x3b, 0x7a, 0xbc,
			0x8d, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab
		};
		unsigned char got[16];

		CHECK(uuid_bytes("0190F0E2-1C3B-7ABC-8DEF-0123456789AB", got) == 0);
		CHECK(memcmp(got, want, 16) == 0);
		CHECK(uuid_bytes("0190f0e2-1c3b-7abc-8def-0123456789a", got) < 0);
		CHECK(uuid_bytes("0190f0e21c3b7abc8def0123456789ab", got) < 0);
	}
}

static void
test_timestamp(void)
{
	char t[TIMESTAMP_LEN + 1];

	timestamp_now(t);
	CHECK(strlen(t) == TIMESTAMP_LEN);
	CHECK(timestamp_valid(t));
	CHECK(timestamp_valid("2026-11-26T21:09:34Z"));
	CHECK(timestamp_valid("2026-11-26T21:09:34.1+01:00"));
	CHECK(!timestamp_valid("2026-11-26 21:09"));
	CHECK(!timestamp_valid("2026-11-26T21:09:34"));
	CHECK(!timestamp_valid("2026-11-26T21:09:34.Z"));
	CHECK(!timestamp_valid("yesterday"));
}

static void
test_roundtrip(void)
{
	const char *payload = "{\"id\":12345678901234567890,\n\t\"amount\":1.10,\"a\":1,\"a\":2,\"s\":\"\\u00e9\\/\"}";
	const char *hdr = "{\"content-type\":\"application/json\"}";
	struct envelope e, p;
	struct buf line = BUF_INIT, arena = BUF_INIT;
	const char *why = NULL;

	memset(&e, 0, sizeof e);
	strcpy(e.id, "0190f0e2-1c3b-7abc-8def-0123456789ab");
	strcpy(e.workspace_id, "11111111-2222-3333-4444-555555555555");
	e.source = "stripe";
	e.source_kind = "webhook.stripe";
	e.event_type = "payment \"succeeded\"";
	e.role = "webhook.stripe.payment_succeeded";
	e.dedupe_key = NULL;
	e.source_identifier = "evt_1";
	e.received_at = "2026-11-26T21:09:34.123456Z";
	e.headers = hdr;
	e.headers_len = strlen(hdr);
	e.payload = payload;
	e.payload_len = strlen(payload);
	CHECK(envelope_build(&line, &e) == 0);
	CHECK(memchr(line.p, '\n', line.len) == NULL);
	CHECK(strstr(line.p, "\"payload\":{\"id\":12345678901234567890,  \"amount\":1.10,\"a\":1,\"a\":2,\"s\":\"\\u00e9\\/\"}}") != NULL);
	CHECK(strstr(line.p, "\"dedupe_key\":null") != NULL);
	CHECK(strncmp(line.p, "{\"v\":1,\"id\":\"0190f0e2-1c3b-7abc-8def-0123456789ab\"", 50) == 0);

	CHECK(envelope_parse(line.p, line.len, &p, &arena, &why) == 0);
	CHECK_STR(p.id, e.id);
	CHECK_STR(p.workspace_id, e.workspace_id);
	CHECK_STR(p.event_type, "payment \"succeeded\"");
	CHECK(p.dedupe_key == NULL);
	CHECK_STR(p.source, "stripe");
	CHECK(p.payload_len == strlen(payload));
	CHECK(strncmp(p.payload, "{\"id\":12345678901234567890,  \"amount\"", 37) == 0);
	CHECK(p.headers_len == strlen(hdr));
	buf_free(&line);
	buf_free(&arena);
}

static int
parses(const char *line)
{
	struct envelope p;
	struct buf arena = BUF_INIT;
	const char *why = NULL;
	int ok = envelope_parse(line, strlen(line), &p, &arena, &why) == 0;

	buf_free(&arena);
	return ok;
}

#define GOOD_HEAD "{\"v\":1,\"id\":\"0190F0E2-1c3b-7abc-8def-0123456789ab\",\"workspace_id\":\"11111111-2222-3333-4444-555555555555\",\"source_kind\":\"webhook.x\",\"event_type\":\"e\",\"role\":\"webhook.x.e\",\"source_identifier\":\"s\",\"received_at\":\"2026-11-26T21:09:34Z\""

static void
test_parse_rejects(void)
{
	CHECK(parses(GOOD_HEAD ",\"payload\":{}}"));
	CHECK(parses(GOOD_HEAD ",\"dedupe_key\":\"k\",\"headers\":{\"a\":\"b\"},\"extra\":[1],\"payload\":{}}"));
	CHECK(!parses(GOOD_HEAD "}"));
	CHECK(!parses(GOOD_HEAD ",\"payload\":[]}"));
	CHECK(!parses(GOOD_HEAD ",\"payload\":{},\"v\":2}"));
	CHECK(!parses(GOOD_HEAD ",\"payload\":{},\"dedupe_key\":5}"));
	CHECK(!parses(GOOD_HEAD ",\"payload\":{},\"headers\":{\"a\":\"\\u0000\"}}"));
	CHECK(parses(GOOD_HEAD ",\"payload\":{},\"headers\":{\"a\":\"\\\\u0000\"}}"));
	CHECK(!parses(GOOD_HEAD ",\"payload\":{},\"event_type\":\"a\\u0000\"}"));
	CHECK(!parses(GOOD_HEAD ",\"payload\":{},\"event_type\":\"\"}"));
	CHECK(!parses(GOOD_HEAD ",\"payload\":{},\"received_at\":\"now\"}"));
	CHECK(!parses(GOOD_HEAD ",\"payload\":{},\"id\":\"nope\"}"));
	CHECK(!parses(GOOD_HEAD ",\"payload\":{}} trailing"));
	CHECK(!parses("not json"));
	CHECK(!parses(""));
	/* payload may hold \u0000: the json column keeps it */
	CHECK(parses(GOOD_HEAD ",\"payload\":{\"a\\u0000\":\"\\u0000\"}}"));
}

static void
test_lines(void)
{
	char path[] = "/tmp/infonchat-lines-XXXXXX";
	int fd = mkstemp(path);
	const char *text = "one\r\ntoo-long-line\n\nthree\nlast";
	struct line_reader lr;
	const char *line;
	size_t len;
	enum line_result r;
	int got = 0;

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	lseek(fd, 0, SEEK_SET);
	unlink(path);
	lines_init(&lr, fd, 8);
	char seen[5][16];
	long nums[5];
	int kinds[5];
	while ((r = lines_next(&lr, &line, &len)) != LINE_EOF && got < 5) {
		if (r == LINE_NEED_MORE) {
			CHECK(lines_fill(&lr) >= 0);
			continue;
		}
		kinds[got] = r;
		nums[got] = lr.lineno;
		snprintf(seen[got], sizeof seen[got], "%.*s", r == LINE_OK ? (int)len : 0, r == LINE_OK ? line : "");
		got++;
	}
	CHECK(got == 5);
	CHECK(kinds[0] == LINE_OK && strcmp(seen[0], "one") == 0 && nums[0] == 1);
	CHECK(kinds[1] == LINE_TOO_LONG && nums[1] == 2);
	CHECK(kinds[2] == LINE_OK && strcmp(seen[2], "") == 0 && nums[2] == 3);
	CHECK(kinds[3] == LINE_OK && strcmp(seen[3], "three") == 0 && nums[3] == 4);
	CHECK(kinds[4] == LINE_OK && strcmp(seen[4], "last") == 0 && nums[4] == 5);
	lines_free(&lr);
	close(fd);
}

int
main(void)
{
	test_uuid();
	test_timestamp();
	test_roundtrip();
	test_parse_rejects();
	test_lines();
	return check_done("test_envelope");
}
