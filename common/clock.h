/*
 * clock.h: monotonic time for deadlines and intervals.
 *
 * clock_ms() never jumps when the wall clock is set, so "every 500 ms" and
 * "not before t + 100 ms" stay right across NTP steps. The origin is
 * arbitrary (boot); only differences mean anything.
 */
#ifndef INFONCHAT_CLOCK_H
#define INFONCHAT_CLOCK_H

/* Milliseconds on CLOCK_MONOTONIC. */
long long clock_ms(void);

/* Milliseconds from now until deadline (a clock_ms() value), clamped to
 * [0, cap]; a convenient poll timeout. */
long clock_until(long long deadline, long cap);

#endif
