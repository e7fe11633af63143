/*
 * signature.h: webhook signature verification (DESIGN.md, "Signature
 * verification"), pure functions over the raw body bytes as received and a
 * few header values; no I/O, no allocation per call.
 *
 * Schemes (the names of infonchat.webhook_secrets.scheme):
 *
 *   standard-webhooks  webhook-id, webhook-timestamp, webhook-signature:
 *                      "v1,<base64>" (several, space-separated); key = the
 *                      base64-decoded part after "whsec_"; signed content
 *                      "<id>.<timestamp>.<body>"
 *   stripe             Stripe-Signature "t=<ts>,v1=<hex>[,v1=<hex>...]"; key
 *                      = the whole secret string; signed "<t>.<body>"
 *   github             X-Hub-Signature-256 "sha256=<hex>" of the body
 *   slack              X-Slack-Signature "v0=<hex>" of "v0:<ts>:<body>",
 *                      ts from X-Slack-Request-Timestamp
 *   hmac-sha256        X-Signature "<hex>" or "sha256=<hex>" of the body
 *
 * Every MAC is HMAC-SHA256 (OpenSSL libcrypto); comparisons are constant
 * time (CRYPTO_memcmp). Timestamped schemes refuse a timestamp more than
 * SIG_TOLERANCE seconds away from now, before any MAC is computed.
 *
 * Not thread-safe: one HMAC context is kept for the process (every stage is
 * single-threaded); sig_cleanup() releases it.
 */
#ifndef INFONCHAT_SIGNATURE_H
#define INFONCHAT_SIGNATURE_H

#include <stddef.h>

#include "buf.h"

#define SIG_TOLERANCE 300      /* seconds */
#define SIG_MAC_LEN   32       /* HMAC-SHA256 */

enum sig_scheme {
	SIG_STANDARD_WEBHOOKS,
	SIG_STRIPE,
	SIG_GITHUB,
	SIG_SLACK,
	SIG_HMAC_SHA256
};

/* Worst first: when several secrets fail, the caller reports the largest. */
enum sig_result {
	SIG_OK = 0,
	SIG_MISSING,           /* the scheme's signature headers are absent */
	SIG_BAD,               /* present but no signature matches (or malformed) */
	SIG_STALE              /* timestamp more than SIG_TOLERANCE s away */
};

/* Scheme by its table name; returns 0, or -1 for an unknown name. */
int sig_scheme_parse(const char *name, enum sig_scheme *out);
const char *sig_scheme_name(enum sig_scheme s);

/* The error code of a failed result: "missing_signature", "bad_signature", ... */
const char *sig_result_code(enum sig_result r);

/*
 * Turn a stored secret into the HMAC key for its scheme, appended to *key
 * (not reset): for standard-webhooks the base64 decoding of what follows an
 * optional "whsec_" prefix, for the others the secret's bytes. Returns 0, or
 * -1 when the secret is unusable (bad base64, empty key) or out is full.
 */
int sig_key_prepare(enum sig_scheme s, const char *secret, size_t n, struct buf *key);

/*
 * What a request offers: the raw body and the header values (NUL-terminated,
 * NULL when absent; the first occurrence of a repeated header). now is the
 * wall clock in Unix seconds.
 */
struct sig_request {
	const char *body;
	size_t body_len;
	const char *webhook_id;            /* standard-webhooks */
	const char *webhook_timestamp;
	const char *webhook_signature;
	const char *stripe_signature;      /* stripe */
	const char *hub_signature_256;     /* github */
	const char *slack_signature;       /* slack */
	const char *slack_timestamp;
	const char *x_signature;           /* hmac-sha256 */
	long long now;
};

/*
 * Verify r against one key of scheme s. SIG_OK when any signature in the
 * header matches. An empty key never verifies (SIG_BAD).
 */
enum sig_result sig_verify(enum sig_scheme s, const unsigned char *key, size_t key_len,
    const struct sig_request *r);

/* One piece of the signed content. */
struct sig_part {
	const void *p;
	size_t len;
};

/* out = HMAC-SHA256(key, concatenation of parts). Returns 0 or -1. */
int sig_hmac_sha256(const unsigned char *key, size_t key_len,
    const struct sig_part *parts, size_t nparts, unsigned char out[SIG_MAC_LEN]);

/* Decode standard base64 (with '=' padding) into out[0..cap); returns the
 * length, or -1 when malformed or longer than cap. */
long sig_base64_decode(const char *s, size_t n, unsigned char *out, size_t cap);

/* Release the process's HMAC context (at exit; harmless when never used). */
void sig_cleanup(void);

#endif
