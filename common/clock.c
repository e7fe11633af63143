#include "clock.h"

#include <time.h>

long long
clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long
clock_until(long long deadline, long cap)
{
	long long left = deadline - clock_ms();

	if (left < 0)
		return 0;
	return left > cap ? cap : (long)left;
}
