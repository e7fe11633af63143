/*
 * check.h: the smallest assertion kit for the unit tests of common/.
 *
 * CHECK(cond) records one passed or failed assertion and prints the failing
 * expression with its line; CHECK_STR compares C strings. check_done() prints
 * "<file>: N passed, N failed" and returns the exit status for main().
 */
#ifndef INFONCHAT_CHECK_H
#define INFONCHAT_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond) do { \
	if (cond) check_passed++; \
	else { check_failed++; \
		fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_STR(got, want) do { \
	const char *check_g_ = (got), *check_w_ = (want); \
	if (check_g_ != NULL && check_w_ != NULL && strcmp(check_g_, check_w_) == 0) \
		check_passed++; \
	else { check_failed++; \
		fprintf(stderr, "%s:%d: FAILED: %s\n  got:  %s\n  want: %s\n", \
		    __FILE__, __LINE__, #got, check_g_ ? check_g_ : "(null)", \
		    check_w_ ? check_w_ : "(null)"); } \
} while (0)

static inline int
check_done(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
