/*
 * log.h: one logfmt line per event on stderr.
 *
 *   ts=2026-11-26T21:09:34.123456Z level=info prog=inbox-writer msg="batch committed" rows=12
 *
 * msg is a short constant phrase; the key=value pairs come from a printf
 * format the caller writes as " key=%s key=%d". Any value that may hold a
 * space, quote or control character must go through log_q(), which quotes
 * and escapes it. Lines are written whole, so concurrent writers to the
 * same log never interleave within a line; info and debug lines are kept
 * until log_flush(), which every stage calls before it blocks (so a line is
 * out before the stage waits for anything), warn and error lines go at once.
 */
#ifndef INFONCHAT_LOG_H
#define INFONCHAT_LOG_H

enum log_level { LL_DEBUG, LL_INFO, LL_WARN, LL_ERROR };

void log_init(const char *prog);
void log_set_level(enum log_level level);
int log_level_parse(const char *name, enum log_level *out);
int log_enabled(enum log_level level);

/* Write the lines kept so far. Call before blocking; also run at exit. */
void log_flush(void);

void log_msg(enum log_level level, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Quote a value for logfmt when it needs it (empty, spaces, '=', quotes,
 * controls). The result lives in one of 8 rotating static buffers of 512
 * bytes, so up to 8 log_q() calls may appear in one log_msg(); longer values
 * are cut and end in "...".
 */
const char *log_q(const char *value);

#define log_debug(msg, ...) do { if (log_enabled(LL_DEBUG)) log_msg(LL_DEBUG, msg, __VA_ARGS__); } while (0)
#define log_info(msg, ...)  log_msg(LL_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...)  log_msg(LL_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_msg(LL_ERROR, msg, __VA_ARGS__)

#endif
