/*
 * Unit tests of common/signature.c. Published vectors: the Standard Webhooks
 * specification's example and GitHub's documentation example; the other
 * expected MACs were computed independently with Python's hmac module.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "signature.h"

#define SW_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SW_ID     "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SW_TS     "1614265330"
#define SW_BODY   "{\"test\": 2432232314}"
#define SW_SIG    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

#define GH_SECRET "It's a Secret to Everybody"
#define GH_BODY   "Hello, World!"
#define GH_SIG    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

static enum sig_result
verify(enum sig_scheme s, const char *secret, const struct sig_request *r)
{
	struct buf key = BUF_INIT;
	enum sig_result res = SIG_BAD;

	if (sig_key_prepare(s, secret, strlen(secret), &key) == 0)
		res = sig_verify(s, (const unsigned char *)key.p, key.len, r);
	buf_free(&key);
	return res;
}

static struct sig_request
req(const char *body, long long now)
{
	struct sig_request r;

	memset(&r, 0, sizeof r);
	r.body = body;
	r.body_len = strlen(body);
	r.now = now;
	return r;
}

static void
test_names(void)
{
	enum sig_scheme s;

	CHECK(sig_scheme_parse("standard-webhooks", &s) == 0 && s == SIG_STANDARD_WEBHOOKS);
	CHECK(sig_scheme_parse("hmac-sha256", &s) == 0 && s == SIG_HMAC_SHA256);
	CHECK(sig_scheme_parse("Stripe", &s) < 0);
	CHECK_STR(sig_scheme_name(SIG_SLACK), "slack");
	CHECK_STR(sig_result_code(SIG_MISSING), "missing_signature");
	CHECK_STR(sig_result_code(SIG_BAD), "bad_signature");
	CHECK_STR(sig_result_code(SIG_STALE), "stale_timestamp");
}

static void
test_base64(void)
{
	unsigned char out[16];

	CHECK(sig_base64_decode("aGVsbG8=", 8, out, sizeof out) == 5 && memcmp(out, "hello", 5) == 0);
	CHECK(sig_base64_decode("aGVsbG8", 7, out, sizeof out) == 5);
	CHECK(sig_base64_decode("aGVsbA==", 8, out, sizeof out) == 4);
	CHECK(sig_base64_decode("", 0, out, sizeof out) == 0);
	CHECK(sig_base64_decode("a", 1, out, sizeof out) < 0);
	CHECK(sig_base64_decode("aG!s", 4, out, sizeof out) < 0);
	CHECK(sig_base64_decode("aGVsbG8=", 8, out, 4) < 0);
}

static void
test_standard_webhooks(void)
{
	struct sig_request r = req(SW_BODY, 1614265330);

	CHECK(verify(SIG_STANDARD_WEBHOOKS, SW_SECRET, &r) == SIG_MISSING);
	r.webhook_id = SW_ID;
	r.webhook_timestamp = SW_TS;
	r.webhook_signature = SW_SIG;
	CHECK(verify(SIG_STANDARD_WEBHOOKS, SW_SECRET, &r) == SIG_OK);
	/* the key is the decoded secret; without the prefix it is the same */
	CHECK(verify(SIG_STANDARD_WEBHOOKS, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &r) == SIG_OK);
	/* several signatures, one valid, in any position */
	r.webhook_signature = "v1,Zm9vYmFyYmF6 v1a,xyz " SW_SIG;
	CHECK(verify(SIG_STANDARD_WEBHOOKS, SW_SECRET, &r) == SIG_OK);
	r.webhook_signature = SW_SIG " v1,Zm9vYmFyYmF6";
	CHECK(verify(SIG_STANDARD_WEBHOOKS, SW_SECRET, &r) == SIG_OK);
	/* only v1 counts */
	r.webhook_signature = "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
	CHECK(verify(SIG_STANDARD_WEBHOOKS, SW_SECRET, &r) == SIG_BAD);
	r.webhook_signature = SW_SIG;
	/* wrong key, tampered body, tampered id */
	CHECK(verify(SIG_STANDARD_WEBHOOKS, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &r) == SIG_BAD);
	r.body = "{\"test\": 2432232315}";
	CHECK(verify(SIG_STANDARD_WEBHOOKS, SW_SECRET, &r) == SIG_BAD);
	r.body = SW_BODY;
	r.webhook_id = "msg_other";
	CHECK(verify(SIG_STANDARD_WEBHOOKS, SW_SECRET, &r) == SIG_BAD);
	r.webhook_id = SW_ID;
	/* tolerance: 300 s either way, then stale */
	r.now = 1614265330 + 300;
	CHECK(verify(SIG_STANDARD_WEBHOOKS, SW_SECRET, &r) == SIG_OK);
	r.now = 1614265330 + 301;
	CHECK(verify(SIG_STANDARD_WEBHOOKS, SW_SECRET, &r) == SIG_STALE);
	r.now = 1614265330 - 301;
	CHECK(verify(SIG_STANDARD_WEBHOOKS, SW_SECRET, &r) == SIG_STALE);
	r.now = 1614265330;
	r.webhook_timestamp = "16142653x0";
	CHECK(verify(SIG_STANDARD_WEBHOOKS, SW_SECRET, &r) == SIG_BAD);
	/* an unusable secret */
	{
		struct buf key = BUF_INIT;
		CHECK(sig_key_prepare(SIG_STANDARD_WEBHOOKS, "whsec_", 6, &key) < 0);
		CHECK(sig_key_prepare(SIG_STANDARD_WEBHOOKS, "whsec_@@@", 9, &key) < 0);
		buf_free(&key);
	}
}

static void
test_github(void)
{
	struct sig_request r = req(GH_BODY, 0);

	CHECK(verify(SIG_GITHUB, GH_SECRET, &r) == SIG_MISSING);
	r.hub_signature_256 = GH_SIG;
	CHECK(verify(SIG_GITHUB, GH_SECRET, &r) == SIG_OK);
	r.hub_signature_256 = "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17";
	CHECK(verify(SIG_GITHUB, GH_SECRET, &r) == SIG_OK);
	r.hub_signature_256 = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
	CHECK(verify(SIG_GITHUB, GH_SECRET, &r) == SIG_BAD);     /* prefix required */
	r.hub_signature_256 = GH_SIG;
	CHECK(verify(SIG_GITHUB, "It's a Secret to Everybody!", &r) == SIG_BAD);
	r.body = "Hello, World?";
	CHECK(verify(SIG_GITHUB, GH_SECRET, &r) == SIG_BAD);
	r.body = GH_BODY;
	r.hub_signature_256 = "sha256=757107ea";
	CHECK(verify(SIG_GITHUB, GH_SECRET, &r) == SIG_BAD);
}

static void
test_hmac_sha256(void)
{
	struct sig_request r = req(GH_BODY, 0);

	CHECK(verify(SIG_HMAC_SHA256, GH_SECRET, &r) == SIG_MISSING);
	r.x_signature = GH_SIG;
	CHECK(verify(SIG_HMAC_SHA256, GH_SECRET, &r) == SIG_OK);
	r.x_signature = GH_SIG + 7;      /* bare hex */
	CHECK(verify(SIG_HMAC_SHA256, GH_SECRET, &r) == SIG_OK);
	r.x_signature = "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
	CHECK(verify(SIG_HMAC_SHA256, GH_SECRET, &r) == SIG_BAD);
}

static void
test_stripe(void)
{
	/* HMAC-SHA256("whsec_test_stripe", "1700000000.{\"id\":\"evt_1\"}") */
	const char *good = "cf6ab59db2a13f14509ca6aa99ba5ef44464e3a9324845094c4c6205f0c1773e";
	const char *other = "0000000000000000000000000000000000000000000000000000000000000000";
	char h[256];
	struct sig_request r = req("{\"id\":\"evt_1\"}", 1700000000);

	CHECK(verify(SIG_STRIPE, "whsec_test_stripe", &r) == SIG_MISSING);
	snprintf(h, sizeof h, "t=1700000000,v1=%s", good);
	r.stripe_signature = h;
	/* the whole secret, prefix included, is the key */
	CHECK(verify(SIG_STRIPE, "whsec_test_stripe", &r) == SIG_OK);
	CHECK(verify(SIG_STRIPE, "test_stripe", &r) == SIG_BAD);
	snprintf(h, sizeof h, "t=1700000000,v1=%s,v1=%s,v0=%s", other, good, other);
	CHECK(verify(SIG_STRIPE, "whsec_test_stripe", &r) == SIG_OK);
	snprintf(h, sizeof h, "t=1700000000,v0=%s", good);
	CHECK(verify(SIG_STRIPE, "whsec_test_stripe", &r) == SIG_BAD);
	snprintf(h, sizeof h, "v1=%s", good);
	CHECK(verify(SIG_STRIPE, "whsec_test_stripe", &r) == SIG_BAD);
	snprintf(h, sizeof h, "t=1700000000,v1=%s", good);
	r.now = 1700000000 + 301;
	CHECK(verify(SIG_STRIPE, "whsec_test_stripe", &r) == SIG_STALE);
	r.now = 1700000000;
	r.body = "{\"id\":\"evt_2\"}";
	CHECK(verify(SIG_STRIPE, "whsec_test_stripe", &r) == SIG_BAD);
}

static void
test_slack(void)
{
	/* HMAC-SHA256("8f742231b10e8888abcd99yyyzzz85a5", "v0:1531420618:" body) */
	struct sig_request r = req("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
	    "&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
	    "&command=%2Fwebbot&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
	    "%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
	    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8490703", 1531420618);
	const char *secret = "8f742231b10e8888abcd99yyyzzz85a5";

	CHECK(verify(SIG_SLACK, secret, &r) == SIG_MISSING);
	r.slack_signature = "v0=0250e0cdd1c47a0bbb436aef240d2595fad4efdbc83b0d6636c1c1362b35a689";
	CHECK(verify(SIG_SLACK, secret, &r) == SIG_MISSING);
	r.slack_timestamp = "1531420618";
	CHECK(verify(SIG_SLACK, secret, &r) == SIG_OK);
	r.now += 1000;
	CHECK(verify(SIG_SLACK, secret, &r) == SIG_STALE);
	r.now -= 1000;
	r.slack_timestamp = "1531420619";
	CHECK(verify(SIG_SLACK, secret, &r) == SIG_BAD);
}

int
main(void)
{
	test_names();
	test_base64();
	test_standard_webhooks();
	test_github();
	test_hmac_sha256();
	test_stripe();
	test_slack();
	sig_cleanup();
	return check_done("test_signature");
}
