/* Unit tests of common/webhook.c: sources, slugs, fallbacks, headers, query. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "json.h"
#include "webhook.h"

static const char *
slug(const char *s)
{
	static struct buf b = BUF_INIT;

	buf_reset(&b);
	role_slug(&b, s, strlen(s));
	return b.p;
}

static void
test_source(void)
{
	char out[SOURCE_MAX + 1];
	char longest[SOURCE_MAX + 2];

	CHECK(source_normalize("Stripe", 6, out) == 0);
	CHECK_STR(out, "stripe");
	CHECK(source_normalize("a_b-c9", 6, out) == 0);
	CHECK_STR(out, "a_b-c9");
	CHECK(source_normalize("", 0, out) < 0);
	CHECK(source_normalize("_x", 2, out) < 0);
	CHECK(source_normalize("-x", 2, out) < 0);
	CHECK(source_normalize("a.b", 3, out) < 0);
	CHECK(source_normalize("a b", 3, out) < 0);
	CHECK(source_normalize("\xc3\xa9t\xc3\xa9", 6, out) < 0);
	memset(longest, 'a', SOURCE_MAX);
	CHECK(source_normalize(longest, SOURCE_MAX, out) == 0);
	memset(longest, 'a', SOURCE_MAX + 1);
	CHECK(source_normalize(longest, SOURCE_MAX + 1, out) < 0);
}

static void
test_slug(void)
{
	CHECK_STR(slug("payment.succeeded"), "payment_succeeded");
	CHECK_STR(slug("Payment.Succeeded"), "payment_succeeded");
	CHECK_STR(slug("  --Issue Comment--  "), "issue_comment");
	CHECK_STR(slug("a..b__c"), "a_b_c");
	CHECK_STR(slug("..."), "received");
	CHECK_STR(slug(""), "received");
	CHECK_STR(slug("\xc3\xa9v\xc3\xa9nement"), "v_nement");
	CHECK_STR(slug("order/created:v2"), "order_created_v2");
	CHECK_STR(slug("ABC123"), "abc123");
}

struct resolved {
	char event_type[256], dedupe_key[256], source_identifier[256];
	int has_dedupe;
};

/* Resolve the fields of payload for source, with the other inputs in hdr. */
static struct resolved
resolve_profile(const char *source, const char *payload, const struct field_inputs *hdr)
{
	struct fields f;
	struct field_inputs in = *hdr;
	struct json_span span;
	struct resolved r;

	memset(&r, 0, sizeof r);
	fields_init(&f);
	if (json_check_object(payload, strlen(payload), 1000, &span, NULL) != JSON_OK) {
		CHECK(!"payload fixture is not a JSON object");
		return r;
	}
	in.payload = &span;
	in.source = source;
	in.workspace_id = "00000000-0000-0000-0000-000000000001";
	CHECK(fields_resolve(&f, &in) == 0);
	snprintf(r.event_type, sizeof r.event_type, "%s", f.event_type.p);
	snprintf(r.dedupe_key, sizeof r.dedupe_key, "%s", f.has_dedupe_key ? f.dedupe_key.p : "(null)");
	snprintf(r.source_identifier, sizeof r.source_identifier, "%s", f.source_identifier.p);
	r.has_dedupe = f.has_dedupe_key;
	fields_free(&f);
	return r;
}

/* The generic rules: an unknown source, query and header inputs as given. */
static struct resolved
resolve(const char *payload, const char *q_et, const char *q_si, const char *q_dk,
    const char *h_wid, const char *h_rid)
{
	struct field_inputs in;

	memset(&in, 0, sizeof in);
	in.query_event_type = q_et;
	in.query_source_identifier = q_si;
	in.query_dedupe_key = q_dk;
	in.header_webhook_id = h_wid;
	in.header_request_id = h_rid;
	return resolve_profile("acme", payload, &in);
}

static void
test_fallbacks(void)
{
	struct resolved r;

	/* event_type: query, event, type, action, received */
	r = resolve("{\"event\":\"e\",\"type\":\"t\",\"action\":\"a\"}", "q", NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "q");
	r = resolve("{\"event\":\"e\",\"type\":\"t\",\"action\":\"a\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "e");
	r = resolve("{\"event\":\"e\",\"type\":\"t\",\"action\":\"a\"}", "", NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "e");
	r = resolve("{\"type\":\"t\",\"action\":\"a\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "t");
	r = resolve("{\"action\":\"a\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "a");
	r = resolve("{}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "received");
	/* only non-empty strings count */
	r = resolve("{\"event\":\"\",\"type\":12,\"action\":\"a\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "a");
	r = resolve("{\"event\":null,\"type\":{\"x\":1},\"action\":[\"a\"]}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "received");
	r = resolve("{\"event\":true}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "received");
	/* \u0000 does not count; other escapes decode */
	r = resolve("{\"event\":\"a\\u0000b\",\"type\":\"t\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "t");
	r = resolve("{\"event\":\"caf\\u00e9\\n\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "caf\xc3\xa9\n");
	/* the last occurrence counts, even when it does not qualify */
	r = resolve("{\"event\":\"first\",\"event\":\"last\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "last");
	r = resolve("{\"event\":\"first\",\"event\":5,\"type\":\"t\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "t");
	/* escaped key names are the same key */
	r = resolve("{\"\\u0065vent\":\"esc\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "esc");
	/* keys are case-sensitive, and nested ones do not count */
	r = resolve("{\"Event\":\"E\",\"data\":{\"event\":\"nested\"}}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.event_type, "received");

	/* dedupe_key: query, x-webhook-id, x-request-id, null */
	r = resolve("{}", NULL, NULL, "qk", "wid", "rid");
	CHECK_STR(r.dedupe_key, "qk");
	r = resolve("{}", NULL, NULL, NULL, "wid", "rid");
	CHECK_STR(r.dedupe_key, "wid");
	r = resolve("{}", NULL, NULL, "", "", "rid");
	CHECK_STR(r.dedupe_key, "rid");
	r = resolve("{\"id\":\"evt_1\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK(r.has_dedupe == 0);

	/* source_identifier: query, dedupe key, payload id, source:workspace */
	r = resolve("{\"id\":\"evt_1\"}", NULL, "qs", "qk", NULL, NULL);
	CHECK_STR(r.source_identifier, "qs");
	r = resolve("{\"id\":\"evt_1\"}", NULL, NULL, NULL, "wid", NULL);
	CHECK_STR(r.source_identifier, "wid");
	r = resolve("{\"id\":\"evt_1\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.source_identifier, "evt_1");
	r = resolve("{\"id\":12345678901234567890}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.source_identifier, "12345678901234567890");
	r = resolve("{\"id\":1.50}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.source_identifier, "1.50");
	r = resolve("{\"id\":-0.0e+1}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.source_identifier, "-0.0e+1");
	r = resolve("{\"id\":\"\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.source_identifier, "acme:00000000-0000-0000-0000-000000000001");
	r = resolve("{\"id\":true}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.source_identifier, "acme:00000000-0000-0000-0000-000000000001");
	r = resolve("{\"id\":\"x\\u0000\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.source_identifier, "acme:00000000-0000-0000-0000-000000000001");
	r = resolve("{\"id\":1,\"id\":\"two\"}", NULL, NULL, NULL, NULL, NULL);
	CHECK_STR(r.source_identifier, "two");
}


static void
test_profiles(void)
{
	struct field_inputs h;
	struct resolved r;

	/* github: X-GitHub-Event [+ "." action], X-GitHub-Delivery */
	memset(&h, 0, sizeof h);
	h.header_github_event = "pull_request";
	h.header_github_delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
	h.header_webhook_id = "wid";
	r = resolve_profile("github", "{\"action\":\"opened\",\"event\":\"e\"}", &h);
	CHECK_STR(r.event_type, "pull_request.opened");
	CHECK_STR(r.dedupe_key, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
	CHECK_STR(r.source_identifier, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
	r = resolve_profile("github", "{\"action\":5,\"zen\":\"z\"}", &h);
	CHECK_STR(r.event_type, "pull_request");
	r = resolve_profile("github", "{\"action\":\"\"}", &h);
	CHECK_STR(r.event_type, "pull_request");
	h.query_event_type = "q";
	h.query_dedupe_key = "qk";
	r = resolve_profile("github", "{\"action\":\"opened\"}", &h);
	CHECK_STR(r.event_type, "q");
	CHECK_STR(r.dedupe_key, "qk");
	h.query_event_type = h.query_dedupe_key = NULL;
	h.header_github_event = h.header_github_delivery = NULL;
	r = resolve_profile("github", "{\"action\":\"opened\"}", &h);
	CHECK_STR(r.event_type, "opened");
	CHECK_STR(r.dedupe_key, "wid");
	/* the github headers mean nothing to another source */
	h.header_github_event = "push";
	h.header_github_delivery = "d1";
	r = resolve_profile("generic", "{}", &h);
	CHECK_STR(r.event_type, "received");
	CHECK_STR(r.dedupe_key, "wid");

	/* shopify */
	memset(&h, 0, sizeof h);
	h.header_shopify_topic = "orders/create";
	h.header_shopify_webhook_id = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";
	r = resolve_profile("shopify", "{\"id\":820982911946154508,\"type\":\"t\"}", &h);
	CHECK_STR(r.event_type, "orders/create");
	CHECK_STR(r.dedupe_key, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
	r = resolve_profile("stripe", "{\"type\":\"t\"}", &h);
	CHECK_STR(r.event_type, "t");
	CHECK(r.has_dedupe == 0);

	/* stripe: payload id; explicit query and header-less */
	memset(&h, 0, sizeof h);
	r = resolve_profile("stripe", "{\"id\":\"evt_1\",\"type\":\"payment_intent.succeeded\"}", &h);
	CHECK_STR(r.event_type, "payment_intent.succeeded");
	CHECK_STR(r.dedupe_key, "evt_1");
	CHECK_STR(r.source_identifier, "evt_1");
	r = resolve_profile("stripe", "{\"id\":\"\"}", &h);
	CHECK(r.has_dedupe == 0);
	h.header_webhook_id = "wid";
	r = resolve_profile("stripe", "{\"id\":\"evt_1\"}", &h);
	CHECK_STR(r.dedupe_key, "evt_1");
	r = resolve_profile("generic", "{\"id\":\"evt_1\"}", &h);
	CHECK_STR(r.dedupe_key, "wid");
	h.header_webhook_id = NULL;
	r = resolve_profile("generic", "{\"id\":\"evt_1\"}", &h);
	CHECK(r.has_dedupe == 0);
	CHECK_STR(r.source_identifier, "evt_1");

	/* Standard Webhooks (the caller decides who is one): webhook-id before x-webhook-id */
	memset(&h, 0, sizeof h);
	h.header_std_webhook_id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
	h.header_webhook_id = "wid";
	r = resolve_profile("acme", "{\"id\":\"x\"}", &h);
	CHECK_STR(r.dedupe_key, "msg_p5jXN8AQM9LWM0D4loKWxJek");
	r = resolve_profile("stripe", "{\"id\":\"evt_9\"}", &h);
	CHECK_STR(r.dedupe_key, "msg_p5jXN8AQM9LWM0D4loKWxJek");
	h.header_std_webhook_id = "";
	r = resolve_profile("acme", "{}", &h);
	CHECK_STR(r.dedupe_key, "wid");
}

static const char *
hjson(const struct header *h, size_t n)
{
	static struct buf b = BUF_INIT;

	buf_reset(&b);
	CHECK(headers_json(&b, h, n) == 0);
	return b.p;
}

#define H(n, v) { n, sizeof n - 1, v, sizeof v - 1 }

static void
test_headers(void)
{
	struct header h1[] = {
		H("Content-Type", "application/json"),
		H("X-Webhook-Id", "evt_1"),
		H("Authorization", "Bearer secret"),
		H("Accept", "a"),
		H("accept", "b"),
		H("Cookie", "c=1"),
		H("Proxy-Authorization", "Basic x"),
		H("X-Quote", "say \"hi\"\\"),
	};
	struct header h2[] = { H("X-Bad", "a\xff" "b"), H("X-Ctl", "a\tb") };

	CHECK_STR(hjson(h1, 8),
	    "{\"content-type\":\"application/json\",\"x-webhook-id\":\"evt_1\","
	    "\"authorization\":\"[redacted]\",\"accept\":\"a, b\",\"cookie\":\"[redacted]\","
	    "\"proxy-authorization\":\"[redacted]\",\"x-quote\":\"say \\\"hi\\\"\\\\\"}");
	CHECK_STR(hjson(h2, 2), "{\"x-bad\":\"a\\ufffdb\",\"x-ctl\":\"a\\tb\"}");
	CHECK_STR(hjson(NULL, 0), "{}");
	/* the result is always valid JSON */
	{
		struct buf b = BUF_INIT;
		headers_json(&b, h1, 8);
		CHECK(json_check_object(b.p, b.len, 10, NULL, NULL) == JSON_OK);
		buf_free(&b);
	}
}

static void
test_query(void)
{
	struct webhook_query q;
	struct buf arena = BUF_INIT;
	const char *msg = NULL;
	const char *s;

	s = "source=Stripe&event_type=payment.succeeded&x=1&dedupe_key=evt%5F1&source_identifier=a+b";
	CHECK(webhook_query_parse(s, strlen(s), &q, &arena, &msg) == 0);
	CHECK_STR(q.source, "Stripe");
	CHECK_STR(q.event_type, "payment.succeeded");
	CHECK_STR(q.dedupe_key, "evt_1");
	CHECK_STR(q.source_identifier, "a b");
	CHECK(webhook_query_parse(NULL, 0, &q, &arena, &msg) == 0);
	CHECK(q.source == NULL && q.event_type == NULL);
	s = "source=&event_type";
	CHECK(webhook_query_parse(s, strlen(s), &q, &arena, &msg) == 0);
	CHECK(q.source == NULL && q.event_type == NULL);
	s = "source=a&source=b";
	CHECK(webhook_query_parse(s, strlen(s), &q, &arena, &msg) < 0);
	s = "sour%63e=a&source=b";
	CHECK(webhook_query_parse(s, strlen(s), &q, &arena, &msg) < 0);
	s = "x=1&x=2&source=a";
	CHECK(webhook_query_parse(s, strlen(s), &q, &arena, &msg) == 0);
	CHECK_STR(q.source, "a");
	s = "event_type=%zz";
	CHECK(webhook_query_parse(s, strlen(s), &q, &arena, &msg) < 0);
	s = "event_type=%4";
	CHECK(webhook_query_parse(s, strlen(s), &q, &arena, &msg) < 0);
	s = "event_type=a%00b";
	CHECK(webhook_query_parse(s, strlen(s), &q, &arena, &msg) < 0);
	s = "event_type=%ff";
	CHECK(webhook_query_parse(s, strlen(s), &q, &arena, &msg) < 0);
	s = "event_type=%C3%A9";
	CHECK(webhook_query_parse(s, strlen(s), &q, &arena, &msg) == 0);
	CHECK_STR(q.event_type, "\xc3\xa9");
	s = "&&event_type=x&";
	CHECK(webhook_query_parse(s, strlen(s), &q, &arena, &msg) == 0);
	CHECK_STR(q.event_type, "x");
	buf_free(&arena);
}

int
main(void)
{
	test_source();
	test_slug();
	test_fallbacks();
	test_profiles();
	test_headers();
	test_query();
	return check_done("test_webhook");
}
