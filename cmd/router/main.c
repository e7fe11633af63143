/*
 * router: the pub/sub hub between outbox-relays and subscribers. See
 * router(1).
 *
 * An XSUB bound at ipc://RUN_DIR/router.sock takes messages from any number
 * of relays; an XPUB bound at ipc://RUN_DIR/events.sock fans them out to
 * subscribers by topic prefix. The counters go to the log every
 * --stats-interval seconds. router --tail is the subscriber end: it prints
 * the envelopes it receives as NDJSON.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <zmq.h>

#include "endpoint.h"
#include "log.h"
#include "prefixes.h"
#include "proxy.h"
#include "stage.h"
#include "tail.h"


struct config {
	int tail;
	long long hwm;
	long long stats_s;
	struct prefixes pf;         /* --topic, --kind */
};

static const struct stage_option options[] = {
	{ "tail", 't', NULL, "subscribe to the router and print envelopes as NDJSON on stdout" },
	{ "topic", 0, "PREFIX", "with --tail: topics starting with PREFIX (repeatable; default all)" },
	{ "kind", 0, "PREFIX", "with --tail: only kinds (topic after the first /) starting with PREFIX (repeatable)" },
	{ "hwm", 0, "N", "messages queued per subscriber (with --tail: received) before dropping (default 10000)" },
	{ "stats-interval", 0, "SECONDS", "log the counters this often; 0: only on SIGHUP and exit (default 10)" },
};

static int
set_option(void *ctx, const struct stage_option *o, const char *arg, const char **err)
{
	struct config *c = ctx;

	*err = NULL;
	if (strcmp(o->name, "tail") == 0) {
		c->tail = 1;
		return 0;
	}
	if (strcmp(o->name, "hwm") == 0)
		return stage_number(arg, 1, 10000000, &c->hwm);
	if (strcmp(o->name, "stats-interval") == 0)
		return stage_number(arg, 0, 86400, &c->stats_s);
	if (strcmp(o->name, "topic") == 0 || strcmp(o->name, "kind") == 0)
		return prefixes_add(&c->pf, o->name, arg, err);
	return -1;
}

int
main(int argc, char **argv)
{
	struct config cfg = { .hwm = 10000, .stats_s = 10 };
	struct stage st = {
		.prog = "router",
		.summary = "Fan envelopes out from outbox-relays to subscribers by topic prefix (XSUB/XPUB).",
		.common = STAGE_IN | STAGE_OUT | STAGE_RUN_DIR,
		.opts = options,
		.nopts = sizeof options / sizeof options[0],
		.set = set_option,
		.ctx = &cfg,
	};
	struct endpoint in, out;
	struct proxy p;
	const char *which;
	void *zctx;
	int rc, status = EX_OK;

	log_init(st.prog);
	rc = stage_args(&st, argc, argv);
	if (rc != 0)
		return rc > 0 ? EX_OK : EX_USAGE;
	if (!cfg.tail && (cfg.pf.ntopics > 0 || cfg.pf.nkinds > 0))
		return stage_usage_error(&st, "%s", "--topic and --kind go with --tail");
	/* The router binds both sides; a tail connects to the subscriber side. */
	if (stage_endpoint(&st, "--in", st.in, cfg.tail ? "events" : "router", !cfg.tail, &in) < 0)
		return EX_USAGE;
	if (cfg.tail) {
		if (st.out != NULL && strcmp(st.out, "-") != 0)
			return stage_usage_error(&st, "%s", "--tail prints on stdout: --out is - or absent");
		out.kind = EP_STDIO;
	} else if (stage_endpoint(&st, "--out", st.out, "events", 1, &out) < 0) {
		return EX_USAGE;
	}
	if (in.kind == EP_NONE)
		return stage_usage_error(&st, "%s", "no input: give --run-dir or --in ENDPOINT");
	if (in.kind == EP_STDIO)
		return stage_usage_error(&st, "%s", "--in wants an endpoint (@ENDPOINT or >ENDPOINT)");
	if (!cfg.tail && (out.kind == EP_NONE || out.kind == EP_STDIO))
		return stage_usage_error(&st, "%s", "--out wants an endpoint: give --run-dir or --out @ENDPOINT");
	if (stage_signals() < 0)
		return EX_OSERR;
	zctx = zmq_ctx_new();
	if (zctx == NULL)
		return EX_OSERR;

	if (cfg.tail) {
		struct tail_config tc = { cfg.pf.topics, cfg.pf.ntopics, cfg.pf.kinds, cfg.pf.nkinds,
		    (int)cfg.hwm };
		status = tail_run(zctx, &in, &tc, &st);
	} else if (proxy_open(&p, zctx, &in, &out, (int)cfg.hwm, &which) < 0) {
		log_error("cannot open socket", " %s=%s err=%s", which,
		    endpoint_text(which[0] == 'i' ? &in : &out), log_q(zmq_strerror(errno)));
		proxy_close(&p);
		status = EX_UNAVAILABLE;
	} else {
		log_info("ready", " in=%s out=%s hwm=%lld stats_interval=%lld",
		    endpoint_text(&in), endpoint_text(&out), cfg.hwm, cfg.stats_s);
		stage_ready(&st);
		if (proxy_run(&p, (long)cfg.stats_s * 1000) < 0)
			status = EX_SOFTWARE;
		proxy_log(&p, "stopped");
		proxy_close(&p);
	}
	(void)zmq_ctx_term(zctx);
	return status;
}
