#include "endpoint.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <zmq.h>

int
endpoint_resolve(const char *spec, const char *run_dir, const char *sock,
    int bind_default, struct endpoint *ep, const char **err)
{
	int n;

	memset(ep, 0, sizeof *ep);
	if (spec != NULL) {
		if (strcmp(spec, "-") == 0) {
			ep->kind = EP_STDIO;
			return 0;
		}
		if (spec[0] != '@' && spec[0] != '>') {
			*err = "want -, @ENDPOINT (bind) or >ENDPOINT (connect)";
			return -1;
		}
		if (strstr(spec + 1, "://") == NULL) {
			*err = "endpoint wants a transport, e.g. tcp://127.0.0.1:5555 or ipc:///path";
			return -1;
		}
		ep->kind = spec[0] == '@' ? EP_BIND : EP_CONNECT;
		n = snprintf(ep->addr, sizeof ep->addr, "%s", spec + 1);
	} else if (run_dir != NULL) {
		ep->kind = bind_default ? EP_BIND : EP_CONNECT;
		n = snprintf(ep->addr, sizeof ep->addr, "ipc://%s/%s.sock", run_dir, sock);
	} else {
		return 0;
	}
	if (n < 0 || (size_t)n >= sizeof ep->addr) {
		*err = "endpoint too long";
		return -1;
	}
	if (strncmp(ep->addr, "ipc://", 6) == 0 &&
	    strlen(ep->addr + 6) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		*err = "ipc path longer than a unix socket path may be (107 bytes)";
		return -1;
	}
	return 0;
}

const char *
endpoint_text(const struct endpoint *ep)
{
	static char texts[2][260];
	static unsigned next;
	char *text = texts[next++ % 2];

	switch (ep->kind) {
	case EP_NONE: return "none";
	case EP_STDIO: return "-";
	default:
		snprintf(text, sizeof texts[0], "%c%s", ep->kind == EP_BIND ? '@' : '>', ep->addr);
		return text;
	}
}

void *
zsock_new(void *ctx, int type, int linger_ms)
{
	void *s = zmq_socket(ctx, type);

	if (s == NULL)
		return NULL;
	if (zmq_setsockopt(s, ZMQ_LINGER, &linger_ms, sizeof linger_ms) < 0) {
		int e = errno;
		zmq_close(s);
		errno = e;
		return NULL;
	}
	return s;
}

int
zsock_attach(void *sock, const struct endpoint *ep)
{
	if (ep->kind == EP_BIND)
		return zmq_bind(sock, ep->addr);
	if (ep->kind == EP_CONNECT)
		return zmq_connect(sock, ep->addr);
	errno = EINVAL;
	return -1;
}

void
zsock_destroy(void **sock)
{
	if (*sock != NULL) {
		zmq_close(*sock);
		*sock = NULL;
	}
}
