#include "stage.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "endpoint.h"
#include "log.h"

#ifndef INFONCHAT_VERSION
#define INFONCHAT_VERSION "0.1.0"
#endif

volatile sig_atomic_t stage_stop;
volatile sig_atomic_t stage_reload;

enum {
	OPT_IN = 1000, OPT_OUT, OPT_DB, OPT_RUN_DIR, OPT_NOTIFY, OPT_LOG_LEVEL,
	OPT_HELP, OPT_VERSION, OPT_OWN
};

struct common_opt {
	unsigned need;      /* 0: every stage */
	struct stage_option o;
	int key;
};

static const struct common_opt common_opts[] = {
	{ STAGE_IN, { "in", 0, "SPEC", "input: - (stdin), @ENDPOINT (bind) or >ENDPOINT (connect)" }, OPT_IN },
	{ STAGE_OUT, { "out", 0, "SPEC", "output: - (stdout), @ENDPOINT (bind) or >ENDPOINT (connect)" }, OPT_OUT },
	{ STAGE_DB, { "db", 0, "CONNINFO", "PostgreSQL connection (env INFONCHAT_DB, else libpq's PG* variables)" }, OPT_DB },
	{ STAGE_RUN_DIR, { "run-dir", 0, "DIR", "find the other stages' sockets in DIR (env INFONCHAT_RUN_DIR)" }, OPT_RUN_DIR },
	{ 0, { "notify-fd", 'd', "N", "write a newline to fd N when ready (s6 readiness)" }, OPT_NOTIFY },
	{ 0, { "log-level", 0, "LEVEL", "debug, info (default), warn or error" }, OPT_LOG_LEVEL },
	{ 0, { "help", 'h', NULL, "print this help and exit" }, OPT_HELP },
	{ 0, { "version", 'V', NULL, "print the version and exit" }, OPT_VERSION },
};
#define NCOMMON (sizeof common_opts / sizeof common_opts[0])

static void
usage_line(const struct stage_option *o)
{
	char left[64];

	if (o->short_name)
		snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name,
		    o->arg ? " " : "", o->arg ? o->arg : "");
	else
		snprintf(left, sizeof left, "    --%s%s%s", o->name,
		    o->arg ? " " : "", o->arg ? o->arg : "");
	printf("  %-30s %s\n", left, o->help);
}

void
stage_usage(const struct stage *st)
{
	printf("usage: %s [options]\n%s\n\noptions:\n", st->prog, st->summary);
	for (size_t i = 0; i < st->nopts; i++)
		usage_line(&st->opts[i]);
	for (size_t i = 0; i < NCOMMON; i++) {
		if (common_opts[i].need == 0 || (common_opts[i].need & st->common))
			usage_line(&common_opts[i].o);
	}
	printf("\nSee %s(1).\n", st->prog);
}

static int
usage_error(const struct stage *st, const char *what, const char *detail)
{
	fprintf(stderr, "%s: %s%s%s (see --help)\n", st->prog, what,
	    detail ? ": " : "", detail ? detail : "");
	return -1;
}

int
stage_args(struct stage *st, int argc, char **argv)
{
	struct option lopts[64];
	char shorts[64];
	size_t nl = 0, ns = 0;
	enum log_level level;
	long long n;
	int c;

	st->in = st->out = st->db = st->run_dir = NULL;
	st->notify_fd = -1;
	if (st->nopts + NCOMMON + 1 > sizeof lopts / sizeof lopts[0])
		abort();
	shorts[ns++] = ':';
	for (size_t i = 0; i < st->nopts; i++) {
		const struct stage_option *o = &st->opts[i];

		lopts[nl++] = (struct option){ o->name, o->arg ? required_argument :
		    no_argument, NULL, OPT_OWN + (int)i };
		if (o->short_name) {
			shorts[ns++] = (char)o->short_name;
			if (o->arg)
				shorts[ns++] = ':';
		}
	}
	for (size_t i = 0; i < NCOMMON; i++) {
		const struct common_opt *co = &common_opts[i];

		if (co->need != 0 && !(co->need & st->common))
			continue;
		lopts[nl++] = (struct option){ co->o.name, co->o.arg ?
		    required_argument : no_argument, NULL, co->key };
		if (co->o.short_name) {
			shorts[ns++] = (char)co->o.short_name;
			if (co->o.arg)
				shorts[ns++] = ':';
		}
	}
	lopts[nl] = (struct option){ NULL, 0, NULL, 0 };
	shorts[ns] = '\0';

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, shorts, lopts, NULL)) != -1) {
		/* Map a short option onto its long key. */
		if (c > 0 && c < 256 && c != '?' && c != ':') {
			int key = -1;
			for (size_t i = 0; i < st->nopts && key < 0; i++)
				if (st->opts[i].short_name == c)
					key = OPT_OWN + (int)i;
			for (size_t i = 0; i < NCOMMON && key < 0; i++)
				if (common_opts[i].o.short_name == c)
					key = common_opts[i].key;
			c = key;
		}
		switch (c) {
		case OPT_IN: st->in = optarg; break;
		case OPT_OUT: st->out = optarg; break;
		case OPT_DB: st->db = optarg; break;
		case OPT_RUN_DIR: st->run_dir = optarg; break;
		case OPT_NOTIFY:
			if (stage_number(optarg, 0, 1023, &n) < 0)
				return usage_error(st, "--notify-fd wants a file descriptor number", optarg);
			st->notify_fd = (int)n;
			break;
		case OPT_LOG_LEVEL:
			if (log_level_parse(optarg, &level) < 0)
				return usage_error(st, "--log-level wants debug, info, warn or error", optarg);
			log_set_level(level);
			break;
		case OPT_HELP:
			stage_usage(st);
			return 1;
		case OPT_VERSION:
			printf("%s %s\n", st->prog, INFONCHAT_VERSION);
			return 1;
		case ':':
			return usage_error(st, "option needs an argument", argv[optind - 1]);
		case '?':
		case -1:
			return usage_error(st, "unknown option", argv[optind - 1]);
		default:
			if (c >= OPT_OWN && (size_t)(c - OPT_OWN) < st->nopts) {
				const char *err = NULL;
				const struct stage_option *o = &st->opts[c - OPT_OWN];

				if (st->set(st->ctx, o, optarg, &err) < 0) {
					char what[96];
					snprintf(what, sizeof what, "bad --%s", o->name);
					return usage_error(st, what, err ? err : optarg);
				}
				break;
			}
			return usage_error(st, "unknown option", argv[optind - 1]);
		}
	}
	st->args = argv + optind;
	st->nargs = argc - optind;
	if (st->nargs > 0)
		return usage_error(st, "unexpected argument", st->args[0]);
	if (st->db == NULL && (st->common & STAGE_DB))
		st->db = getenv("INFONCHAT_DB");
	if (st->run_dir == NULL && (st->common & STAGE_RUN_DIR)) {
		const char *e = getenv("INFONCHAT_RUN_DIR");
		if (e != NULL && *e != '\0')
			st->run_dir = e;
	}
	if (st->notify_fd >= 0 && fcntl(st->notify_fd, F_GETFD) < 0)
		return usage_error(st, "--notify-fd names a descriptor that is not open", NULL);
	return 0;
}

int
stage_usage_error(const struct stage *st, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s (see --help)\n", st->prog, msg);
	return 64;
}

int
stage_endpoint(const struct stage *st, const char *opt, const char *spec,
    const char *sock, int bind_default, struct endpoint *ep)
{
	const char *err = NULL;

	if (endpoint_resolve(spec, st->run_dir, sock, bind_default, ep, &err) == 0)
		return 0;
	stage_usage_error(st, "bad %s: %s", opt, err);
	return -1;
}

static void
on_stop(int sig)
{
	(void)sig;
	if (stage_stop)
		_exit(75);
	stage_stop = 1;
}

static void
on_hup(int sig)
{
	(void)sig;
	stage_reload = 1;
}

int
stage_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop;
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
		return -1;
	sa.sa_handler = on_hup;
	if (sigaction(SIGHUP, &sa, NULL) < 0)
		return -1;
	sa.sa_handler = SIG_IGN;
	return sigaction(SIGPIPE, &sa, NULL);
}

void
stage_ready(struct stage *st)
{
	log_flush();    /* whoever waits for readiness may read the log next */
	if (st->notify_fd < 0)
		return;
	(void)!write(st->notify_fd, "\n", 1);
	close(st->notify_fd);
	st->notify_fd = -1;
}

int
stage_number(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int
stage_size(const char *s, long long min, long long max, long long *out)
{
	char num[32];
	size_t n = s ? strlen(s) : 0;
	long long mult = 1, v;

	if (n == 0 || n >= sizeof num)
		return -1;
	memcpy(num, s, n + 1);
	switch (num[n - 1]) {
	case 'k': case 'K': mult = 1024; break;
	case 'm': case 'M': mult = 1024 * 1024; break;
	case 'g': case 'G': mult = 1024LL * 1024 * 1024; break;
	default: break;
	}
	if (mult != 1)
		num[n - 1] = '\0';
	if (stage_number(num, 0, max / mult, &v) < 0 || v * mult < min)
		return -1;
	*out = v * mult;
	return 0;
}
