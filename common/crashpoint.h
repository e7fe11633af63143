/*
 * crashpoint: named places where a test build kills its own process, so the
 * fault tests hit the worst moments (just before and after a COMMIT, before
 * a reply) on every run instead of by luck.
 *
 * Compiled in only with -DINFONCHAT_CRASH_POINTS (`make CRASHPOINTS=1`,
 * binaries in build/crash/bin); in every other build CRASH_POINT() is
 * nothing at all.  At run time the environment chooses one point:
 *
 *   INFONCHAT_CRASH_POINT=writer.after-commit   the point's name
 *   INFONCHAT_CRASH_AFTER=N                     die on its Nth pass (default 1)
 *
 * The process logs one line ("crash point") and sends itself SIGKILL: no
 * atexit handler, no flush, no goodbye to the database, as in kill -9.
 * The names, and where each sits, are listed in tests/faults/README.
 */
#ifndef INFONCHAT_CRASHPOINT_H
#define INFONCHAT_CRASHPOINT_H

#ifdef INFONCHAT_CRASH_POINTS
void crash_point(const char *name);
#define CRASH_POINT(name) crash_point(name)
#else
#define CRASH_POINT(name) ((void)0)
#endif

#endif
