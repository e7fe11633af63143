/*
 * ingest-httpd: accept webhooks over HTTP and answer 202 only once
 * inbox-writer has committed them. See ingest-httpd(1).
 */
#include <sys/socket.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>
#include <zmq.h>

#include "ack.h"
#include "endpoint.h"
#include "http.h"
#include "ingest.h"
#include "log.h"
#include "ratelimit.h"
#include "secrets.h"
#include "signature.h"
#include "stage.h"

struct config {
	const char *listen;
	long long max_body;
	long long max_header_size;
	long long max_headers;
	long long ack_timeout_ms;
	long long request_timeout_s;
	long long idle_timeout_s;
	long long max_connections;
	long long max_pending;
	double rate_limit;          /* 0: off */
	long long rate_burst;       /* 0: ceil(rate_limit) */
};

static const struct stage_option options[] = {
	{ "listen", 'l', "HOST:PORT", "listen here (default 127.0.0.1:8080)" },
	{ "max-body", 0, "BYTES", "largest accepted body, k/M suffixes (default 1M)" },
	{ "max-header-size", 0, "BYTES", "largest request line + headers (default 64k)" },
	{ "max-headers", 0, "N", "most header fields in a request (default 100)" },
	{ "ack-timeout", 0, "MS", "answer 503 when the writer has not confirmed by then (default 5000)" },
	{ "request-timeout", 0, "SECONDS", "whole request, first byte to last, must arrive within (default 30)" },
	{ "idle-timeout", 0, "SECONDS", "close a keep-alive connection idle this long (default 60)" },
	{ "max-connections", 0, "N", "client connections at once (default 1024)" },
	{ "max-pending", 0, "N", "requests waiting for the writer at once (default 65536)" },
	{ "rate-limit", 0, "RPS", "per-workspace requests a second, then 429 (default: no limit)" },
	{ "rate-burst", 0, "N", "per-workspace burst above --rate-limit (default: RPS rounded up)" },
};

/* A positive decimal number of requests a second, at most 1000000. */
static int
parse_rate(const char *s, double *out)
{
	char *end;
	double v;

	if (s == NULL || !((*s >= '0' && *s <= '9') || *s == '.'))
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !(v >= 0.001 && v <= 1e6))
		return -1;
	*out = v;
	return 0;
}

static int
set_option(void *ctx, const struct stage_option *o, const char *arg, const char **err)
{
	struct config *c = ctx;

	*err = NULL;
	if (strcmp(o->name, "listen") == 0) {
		struct sockaddr_storage ss;
		int len = sizeof ss;

		/* The form is checked here, so a typo is a usage error (64). */
		if (evutil_parse_sockaddr_port(arg, (struct sockaddr *)&ss, &len) < 0) {
			*err = "want IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080";
			return -1;
		}
		c->listen = arg;
		return 0;
	}
	if (strcmp(o->name, "max-body") == 0)
		return stage_size(arg, 2, 1LL << 30, &c->max_body);
	if (strcmp(o->name, "max-header-size") == 0)
		return stage_size(arg, 1024, 1 << 20, &c->max_header_size);
	if (strcmp(o->name, "max-headers") == 0)
		return stage_number(arg, 1, HTTP_MAX_HEADERS_LIMIT, &c->max_headers);
	if (strcmp(o->name, "ack-timeout") == 0)
		return stage_number(arg, 1, 600000, &c->ack_timeout_ms);
	if (strcmp(o->name, "request-timeout") == 0)
		return stage_number(arg, 1, 3600, &c->request_timeout_s);
	if (strcmp(o->name, "idle-timeout") == 0)
		return stage_number(arg, 1, 3600, &c->idle_timeout_s);
	if (strcmp(o->name, "max-connections") == 0)
		return stage_number(arg, 1, 1000000, &c->max_connections);
	if (strcmp(o->name, "max-pending") == 0)
		return stage_number(arg, 1, 1 << 24, &c->max_pending);
	if (strcmp(o->name, "rate-limit") == 0) {
		if (parse_rate(arg, &c->rate_limit) < 0) {
			*err = "want a number of requests a second, 0.001 to 1000000";
			return -1;
		}
		return 0;
	}
	if (strcmp(o->name, "rate-burst") == 0)
		return stage_number(arg, 1, 1000000, &c->rate_burst);
	return -1;
}

struct runtime {
	struct event_base *base;
	struct ingest *g;
	struct stage *st;
	int listening;
	struct event *drain_timer;
	int stopping;
	long long ack_timeout_ms;
};

static void
check_drained(evutil_socket_t fd, short what, void *arg)
{
	struct runtime *rt = arg;

	(void)fd;
	(void)what;
	if (http_server_busy(rt->g->http) == 0)
		event_base_loopbreak(rt->base);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct runtime *rt = arg;
	struct timeval tick = { 0, 50000 };

	(void)what;
	if (sig == SIGHUP) {
		if (rt->g->secrets != NULL) {
			log_info("reload requested: refreshing webhook secrets", "%s", "");
			secrets_refresh_now(rt->g->secrets);
		} else {
			log_info("reload requested: nothing to reload", "%s", "");
		}
		return;
	}
	if (rt->stopping) {
		log_warn("second stop signal: exiting now", " in_flight=%d",
		    http_server_busy(rt->g->http));
		_exit(EX_TEMPFAIL);
	}
	rt->stopping = 1;
	log_info("stopping: draining", " in_flight=%d", http_server_busy(rt->g->http));
	http_server_drain(rt->g->http);
	rt->drain_timer = event_new(rt->base, -1, EV_PERSIST, check_drained, rt);
	if (rt->drain_timer == NULL || event_add(rt->drain_timer, &tick) < 0)
		event_base_loopbreak(rt->base);
}

/* Readiness waits for the first load of the secrets (with --db). */
static void
on_secrets_loaded(void *arg)
{
	struct runtime *rt = arg;

	if (rt->listening)
		stage_ready(rt->st);
}

int
main(int argc, char **argv)
{
	struct config cfg = { "127.0.0.1:8080", 1 << 20, 64 << 10, 100, 5000, 30, 60, 1024, 65536, 0, 0 };
	struct stage st = {
		.prog = "ingest-httpd",
		.summary = "Accept webhooks over HTTP; answer 202 once inbox-writer has committed them.",
		.common = STAGE_OUT | STAGE_RUN_DIR | STAGE_DB,
		.opts = options,
		.nopts = sizeof options / sizeof options[0],
		.set = set_option,
		.ctx = &cfg,
	};
	struct http_limits lim;
	struct endpoint out;
	struct ingest g;
	struct runtime rt;
	struct event *sigs[3] = { NULL, NULL, NULL };
	const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	void *zctx = NULL;
	int rc, status = EX_OK;

	log_init(st.prog);
	rc = stage_args(&st, argc, argv);
	if (rc != 0)
		return rc > 0 ? EX_OK : EX_USAGE;
	if (stage_endpoint(&st, "--out", st.out, "inbox-writer", 0, &out) < 0)
		return EX_USAGE;
	if (out.kind == EP_NONE)
		return stage_usage_error(&st, "no output: give --run-dir, --out ENDPOINT or --out -");
	if (cfg.rate_burst > 0 && cfg.rate_limit == 0)
		return stage_usage_error(&st, "--rate-burst needs --rate-limit");
	signal(SIGPIPE, SIG_IGN);

	memset(&rt, 0, sizeof rt);
	ingest_init(&g, (size_t)cfg.max_body);
	rt.g = &g;
	rt.st = &st;
	rt.ack_timeout_ms = cfg.ack_timeout_ms;
	rt.base = event_base_new();
	if (rt.base == NULL) {
		log_error("cannot create event base", "%s", "");
		ingest_free(&g);
		return EX_OSERR;
	}
	lim = (struct http_limits){
		.max_head = (size_t)cfg.max_header_size,
		.max_headers = (size_t)cfg.max_headers,
		.max_body = (size_t)cfg.max_body,
		.request_timeout_ms = (int)(cfg.request_timeout_s * 1000),
		.idle_timeout_ms = (int)(cfg.idle_timeout_s * 1000),
		.max_conns = (int)cfg.max_connections,
	};
	g.http = http_server_new(rt.base, &lim, ingest_on_head, ingest_on_request, &g);
	if (g.http == NULL) {
		status = EX_OSERR;
		goto done;
	}
	http_server_after_read(g.http, ingest_after_read);
	if (out.kind == EP_STDIO) {
		g.out_fd = STDOUT_FILENO;
		log_warn("debug mode: 202 once written to stdout, NOT durable", "%s", "");
	} else {
		zctx = zmq_ctx_new();
		if (zctx == NULL) {
			status = EX_OSERR;
			goto done;
		}
		g.ack = ack_new(rt.base, zctx, &out, (int)cfg.ack_timeout_ms,
		    (size_t)cfg.max_pending, ingest_on_ack, &g);
		if (g.ack == NULL) {
			log_error("cannot open writer socket", " out=%s err=%s",
			    endpoint_text(&out), log_q(zmq_strerror(errno)));
			status = EX_UNAVAILABLE;
			goto done;
		}
	}
	if (cfg.rate_limit > 0) {
		double burst = cfg.rate_burst > 0 ? (double)cfg.rate_burst :
		    (double)(long long)cfg.rate_limit < cfg.rate_limit ?
		    (double)((long long)cfg.rate_limit + 1) : cfg.rate_limit;

		g.rl = ratelimit_new(cfg.rate_limit, burst);
		if (g.rl == NULL) {
			status = EX_OSERR;
			goto done;
		}
		log_info("rate limit on", " rps=%g burst=%g", cfg.rate_limit, burst < 1 ? 1 : burst);
	}
	if (st.db != NULL && *st.db != '\0') {
		g.secrets = secrets_new(rt.base, st.db, on_secrets_loaded, &rt);
		if (g.secrets == NULL) {
			status = EX_OSERR;
			goto done;
		}
	} else {
		log_warn("no --db: signatures are NOT verified and require_signature is NOT enforced",
		    "%s", "");
	}
	if (http_server_listen(g.http, cfg.listen) < 0) {
		log_error("cannot listen", " listen=%s err=%s", cfg.listen, log_q(strerror(errno)));
		status = EX_UNAVAILABLE;
		goto done;
	}
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(rt.base, signums[i], on_signal, &rt);
		if (sigs[i] == NULL || event_add(sigs[i], NULL) < 0) {
			status = EX_OSERR;
			goto done;
		}
	}
	log_info("listening", " listen=%s out=%s max_body=%lld", cfg.listen,
	    endpoint_text(&out), cfg.max_body);
	rt.listening = 1;
	if (g.secrets == NULL || secrets_loaded(g.secrets))
		stage_ready(&st);

	/* One loop turn at a time: the log is flushed before each wait. */
	while (!event_base_got_break(rt.base)) {
		log_flush();
		if (event_base_loop(rt.base, EVLOOP_ONCE) != 0)
			break;
	}

	if (g.ack != NULL)
		ack_fail_all(g.ack);
	log_info("stopped", "%s", "");
done:
	/* Every exit after the event base exists comes here, so nothing leaks. */
	for (int i = 0; i < 3; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	if (rt.drain_timer)
		event_free(rt.drain_timer);
	http_server_free(g.http);
	ack_free(g.ack);
	secrets_free(g.secrets);
	ratelimit_free(g.rl);
	sig_cleanup();
	ingest_free(&g);
	event_base_free(rt.base);
	if (zctx != NULL)
		zmq_ctx_term(zctx);
	return status;
}
