/*
 * endpoint.h: where a stage reads and writes envelopes.
 *
 * SPEC is "-" (stdin or stdout, one envelope per line), "@ENDPOINT" (bind a
 * ZeroMQ socket) or ">ENDPOINT" (connect one), as in CZMQ. Without a SPEC a
 * stage falls back to its run-dir socket: ipc://RUN_DIR/<name>.sock.
 */
#ifndef INFONCHAT_ENDPOINT_H
#define INFONCHAT_ENDPOINT_H

#include <stddef.h>

enum endpoint_kind { EP_NONE, EP_STDIO, EP_BIND, EP_CONNECT };

struct endpoint {
	enum endpoint_kind kind;
	char addr[256];
};

/*
 * Resolve spec (may be NULL) or else the run-dir default for socket name
 * sock (e.g. "inbox-writer"), bound when bind_default is set. With neither,
 * kind is EP_NONE. Returns 0, or -1 with a reason in err.
 */
int endpoint_resolve(const char *spec, const char *run_dir, const char *sock,
    int bind_default, struct endpoint *ep, const char **err);

/* "@ipc://..." style text for logs. */
const char *endpoint_text(const struct endpoint *ep);

/*
 * New ZeroMQ socket with a bounded linger (linger_ms) so that closing it
 * never hangs zmq_ctx_term. Returns NULL with errno set.
 */
void *zsock_new(void *ctx, int type, int linger_ms);

/* Bind or connect sock as ep says. Returns 0, or -1 with errno set. */
int zsock_attach(void *sock, const struct endpoint *ep);

/* Close and NULL *sock (no-op when NULL). */
void zsock_destroy(void **sock);

#endif
