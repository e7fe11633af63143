#include "signature.h"

#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

static const char *const scheme_names[] = {
	"standard-webhooks", "stripe", "github", "slack", "hmac-sha256"
};
#define NSCHEMES (sizeof scheme_names / sizeof scheme_names[0])

int
sig_scheme_parse(const char *name, enum sig_scheme *out)
{
	for (size_t i = 0; i < NSCHEMES; i++) {
		if (strcmp(name, scheme_names[i]) == 0) {
			*out = (enum sig_scheme)i;
			return 0;
		}
	}
	return -1;
}

const char *
sig_scheme_name(enum sig_scheme s)
{
	return (size_t)s < NSCHEMES ? scheme_names[s] : "unknown";
}

const char *
sig_result_code(enum sig_result r)
{
	switch (r) {
	case SIG_OK: return "ok";
	case SIG_MISSING: return "missing_signature";
	case SIG_BAD: return "bad_signature";
	case SIG_STALE: return "stale_timestamp";
	}
	return "bad_signature";
}

/* --- HMAC ---------------------------------------------------------------- */

static EVP_MAC *hmac;
static EVP_MAC_CTX *hmac_ctx;

int
sig_hmac_sha256(const unsigned char *key, size_t key_len,
    const struct sig_part *parts, size_t nparts, unsigned char out[SIG_MAC_LEN])
{
	static char digest[] = "SHA256";
	OSSL_PARAM params[2];
	size_t outl = 0;

	/* A NULL key would make EVP_MAC_init reuse the previous one. */
	if (key == NULL || key_len == 0)
		return -1;
	if (hmac == NULL) {
		hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
		if (hmac == NULL)
			return -1;
	}
	if (hmac_ctx == NULL) {
		hmac_ctx = EVP_MAC_CTX_new(hmac);
		if (hmac_ctx == NULL)
			return -1;
	}
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(hmac_ctx, key, key_len, params) != 1)
		return -1;
	for (size_t i = 0; i < nparts; i++)
		if (parts[i].len > 0 && EVP_MAC_update(hmac_ctx, parts[i].p, parts[i].len) != 1)
			return -1;
	if (EVP_MAC_final(hmac_ctx, out, &outl, SIG_MAC_LEN) != 1 || outl != SIG_MAC_LEN)
		return -1;
	return 0;
}

void
sig_cleanup(void)
{
	EVP_MAC_CTX_free(hmac_ctx);
	hmac_ctx = NULL;
	EVP_MAC_free(hmac);
	hmac = NULL;
}

/* --- decoding ------------------------------------------------------------ */

static int
b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

long
sig_base64_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
	size_t o = 0, pad = 0;
	unsigned acc = 0;
	int bits = 0;

	while (n > 0 && s[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if ((n + pad) % 4 != 0 && pad != 0)
		return -1;
	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = b64val((unsigned char)s[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return (long)o;
}

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* Exactly 64 hex digits into a MAC; 0 or -1. */
static int
hex_mac(const char *s, size_t n, unsigned char out[SIG_MAC_LEN])
{
	if (n != 2 * SIG_MAC_LEN)
		return -1;
	for (size_t i = 0; i < SIG_MAC_LEN; i++) {
		int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi * 16 + lo);
	}
	return 0;
}

/* Both are SIG_MAC_LEN bytes; a candidate that did not decode never matches. */
static int
mac_equal(const unsigned char *a, const unsigned char *b)
{
	return CRYPTO_memcmp(a, b, SIG_MAC_LEN) == 0;
}

/*
 * A Unix-seconds timestamp: 1 to 18 decimal digits, nothing else. Returns
 * SIG_OK, SIG_BAD (malformed) or SIG_STALE.
 */
static enum sig_result
timestamp_check(const char *s, long long now)
{
	long long t = 0, d;
	size_t n = strlen(s);

	if (n == 0 || n > 18)
		return SIG_BAD;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return SIG_BAD;
		t = t * 10 + (s[i] - '0');
	}
	d = now - t;
	if (d > SIG_TOLERANCE || d < -SIG_TOLERANCE)
		return SIG_STALE;
	return SIG_OK;
}

static int
present(const char *s)
{
	return s != NULL && *s != '\0';
}

/* --- schemes ------------------------------------------------------------- */

static enum sig_result
verify_standard(const unsigned char *key, size_t key_len, const struct sig_request *r)
{
	unsigned char mac[SIG_MAC_LEN], cand[SIG_MAC_LEN + 3];
	struct sig_part parts[5];
	enum sig_result t;
	const char *p;

	if (!present(r->webhook_id) || !present(r->webhook_timestamp) ||
	    !present(r->webhook_signature))
		return SIG_MISSING;
	if ((t = timestamp_check(r->webhook_timestamp, r->now)) != SIG_OK)
		return t;
	parts[0] = (struct sig_part){ r->webhook_id, strlen(r->webhook_id) };
	parts[1] = (struct sig_part){ ".", 1 };
	parts[2] = (struct sig_part){ r->webhook_timestamp, strlen(r->webhook_timestamp) };
	parts[3] = (struct sig_part){ ".", 1 };
	parts[4] = (struct sig_part){ r->body, r->body_len };
	if (sig_hmac_sha256(key, key_len, parts, 5, mac) < 0)
		return SIG_BAD;
	/* "v1,<b64> v1,<b64> v1a,<...>": only v1 entries count. */
	p = r->webhook_signature;
	while (*p != '\0') {
		size_t n;

		while (*p == ' ')
			p++;
		n = strcspn(p, " ");
		if (n > 3 && memcmp(p, "v1,", 3) == 0 &&
		    sig_base64_decode(p + 3, n - 3, cand, sizeof cand) == SIG_MAC_LEN &&
		    mac_equal(mac, cand))
			return SIG_OK;
		p += n;
	}
	return SIG_BAD;
}

static enum sig_result
verify_stripe(const unsigned char *key, size_t key_len, const struct sig_request *r)
{
	unsigned char mac[SIG_MAC_LEN], cand[SIG_MAC_LEN];
	char ts[20];
	struct sig_part parts[3];
	enum sig_result t;
	const char *p;
	int have_t = 0, have_v1 = 0;

	if (!present(r->stripe_signature))
		return SIG_MISSING;
	/* First pass: the timestamp (the first t= counts). */
	for (p = r->stripe_signature; *p != '\0'; ) {
		size_t n = strcspn(p, ",");

		while (n > 0 && *p == ' ') {
			p++;
			n--;
		}
		if (!have_t && n > 2 && memcmp(p, "t=", 2) == 0) {
			if (n - 2 >= sizeof ts)
				return SIG_BAD;
			memcpy(ts, p + 2, n - 2);
			ts[n - 2] = '\0';
			have_t = 1;
		} else if (n > 3 && memcmp(p, "v1=", 3) == 0) {
			have_v1 = 1;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	if (!have_t || !have_v1)
		return SIG_BAD;
	if ((t = timestamp_check(ts, r->now)) != SIG_OK)
		return t;
	parts[0] = (struct sig_part){ ts, strlen(ts) };
	parts[1] = (struct sig_part){ ".", 1 };
	parts[2] = (struct sig_part){ r->body, r->body_len };
	if (sig_hmac_sha256(key, key_len, parts, 3, mac) < 0)
		return SIG_BAD;
	for (p = r->stripe_signature; *p != '\0'; ) {
		size_t n = strcspn(p, ",");
		size_t m = n;

		while (m > 0 && *p == ' ') {
			p++;
			m--;
			n--;
		}
		while (m > 0 && p[m - 1] == ' ')
			m--;
		if (m > 3 && memcmp(p, "v1=", 3) == 0 &&
		    hex_mac(p + 3, m - 3, cand) == 0 && mac_equal(mac, cand))
			return SIG_OK;
		p += n;
		if (*p == ',')
			p++;
	}
	return SIG_BAD;
}

/* "<prefix><hex>" where prefix may be optional: the MAC of parts. */
static enum sig_result
verify_hex(const unsigned char *key, size_t key_len, const char *header,
    const char *prefix, int prefix_optional, const struct sig_part *parts, size_t nparts)
{
	unsigned char mac[SIG_MAC_LEN], cand[SIG_MAC_LEN];
	size_t pl = strlen(prefix);

	if (strncasecmp(header, prefix, pl) == 0)
		header += pl;
	else if (!prefix_optional)
		return SIG_BAD;
	if (hex_mac(header, strlen(header), cand) < 0)
		return SIG_BAD;
	if (sig_hmac_sha256(key, key_len, parts, nparts, mac) < 0)
		return SIG_BAD;
	return mac_equal(mac, cand) ? SIG_OK : SIG_BAD;
}

enum sig_result
sig_verify(enum sig_scheme s, const unsigned char *key, size_t key_len,
    const struct sig_request *r)
{
	struct sig_part parts[5];
	enum sig_result t;

	switch (s) {
	case SIG_STANDARD_WEBHOOKS:
		return verify_standard(key, key_len, r);
	case SIG_STRIPE:
		return verify_stripe(key, key_len, r);
	case SIG_GITHUB:
		if (!present(r->hub_signature_256))
			return SIG_MISSING;
		parts[0] = (struct sig_part){ r->body, r->body_len };
		return verify_hex(key, key_len, r->hub_signature_256, "sha256=", 0, parts, 1);
	case SIG_SLACK:
		if (!present(r->slack_signature) || !present(r->slack_timestamp))
			return SIG_MISSING;
		if ((t = timestamp_check(r->slack_timestamp, r->now)) != SIG_OK)
			return t;
		parts[0] = (struct sig_part){ "v0:", 3 };
		parts[1] = (struct sig_part){ r->slack_timestamp, strlen(r->slack_timestamp) };
		parts[2] = (struct sig_part){ ":", 1 };
		parts[3] = (struct sig_part){ r->body, r->body_len };
		return verify_hex(key, key_len, r->slack_signature, "v0=", 0, parts, 4);
	case SIG_HMAC_SHA256:
		if (!present(r->x_signature))
			return SIG_MISSING;
		parts[0] = (struct sig_part){ r->body, r->body_len };
		return verify_hex(key, key_len, r->x_signature, "sha256=", 1, parts, 1);
	}
	return SIG_BAD;
}

int
sig_key_prepare(enum sig_scheme s, const char *secret, size_t n, struct buf *key)
{
	if (s == SIG_STANDARD_WEBHOOKS) {
		unsigned char tmp[512];
		long len;

		if (n > 6 && memcmp(secret, "whsec_", 6) == 0) {
			secret += 6;
			n -= 6;
		}
		len = sig_base64_decode(secret, n, tmp, sizeof tmp);
		if (len <= 0)
			return -1;
		return buf_append(key, tmp, (size_t)len);
	}
	if (n == 0)
		return -1;
	return buf_append(key, secret, n);
}
