/*
 * stage.h: the skeleton every program stands on. It gives all five stages
 * the same command-line vocabulary (DESIGN.md), the same --help and
 * --version, the same signal behaviour and the s6 readiness protocol:
 *
 *   SIGTERM, SIGINT  first: stage_stop becomes 1 and the stage drains;
 *                    second: exit at once with status 75
 *   SIGHUP           stage_reload becomes 1; the stage reloads what it can
 *   SIGPIPE          ignored
 *
 * Handlers only set flags and are installed without SA_RESTART, so a
 * blocking call returns EINTR and the loop looks at the flags.
 */
#ifndef INFONCHAT_STAGE_H
#define INFONCHAT_STAGE_H

#include <signal.h>
#include <stddef.h>

extern volatile sig_atomic_t stage_stop;
extern volatile sig_atomic_t stage_reload;

/* Which of the shared options a stage takes. */
#define STAGE_IN       0x1
#define STAGE_OUT      0x2
#define STAGE_DB       0x4
#define STAGE_RUN_DIR  0x8

/* A stage's own option. arg is NULL for a flag, else the argument's name. */
struct stage_option {
	const char *name;
	int short_name;
	const char *arg;
	const char *help;
};

struct stage {
	/* Filled in by the stage before stage_args(). */
	const char *prog;
	const char *summary;              /* one line for --help */
	unsigned common;                  /* STAGE_* */
	const struct stage_option *opts;  /* the stage's own options */
	size_t nopts;
	/* Take one of opts; return 0, or -1 with a message for the usage line. */
	int (*set)(void *ctx, const struct stage_option *opt, const char *arg,
	    const char **err);
	void *ctx;

	/* Results; NULL or -1 when not given. Environment defaults applied. */
	const char *in;
	const char *out;
	const char *db;
	const char *run_dir;
	int notify_fd;
	char **args;                      /* operands left after the options */
	int nargs;
};

/*
 * Parse argv. Returns 0 to go on, 1 when --help or --version was printed
 * (exit 0), or -1 after printing one usage line on stderr (exit 64). No
 * stage takes operands: any is a usage error.
 */
int stage_args(struct stage *st, int argc, char **argv);

/*
 * Print "prog: MESSAGE (see --help)" as one line on stderr and return 64
 * (EX_USAGE), for main() to return.
 */
int stage_usage_error(const struct stage *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Resolve --in or --out (opt names which, for the message) from spec or the
 * run-dir default socket sock. Returns 0, or -1 after printing the usage
 * error line.
 */
struct endpoint;
int stage_endpoint(const struct stage *st, const char *opt, const char *spec,
    const char *sock, int bind_default, struct endpoint *ep);

/* Print the usage text (what --help prints) to stdout. */
void stage_usage(const struct stage *st);

/* Install the signal handlers described above. Returns 0 or -1. */
int stage_signals(void);

/* Tell the supervisor we are ready (write "\n" to --notify-fd, close it). */
void stage_ready(struct stage *st);

/* Parse a decimal within [min, max]; returns 0 or -1. */
int stage_number(const char *s, long long min, long long max, long long *out);

/* Parse a byte size: a number with an optional k, M or G suffix (1024s). */
int stage_size(const char *s, long long min, long long max, long long *out);

#endif
