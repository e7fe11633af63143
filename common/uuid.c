#include "uuid.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Random bytes come from a pool refilled with one getrandom(2) per 4 KiB. */
static unsigned char pool[4096];
static size_t pool_left;

static int
random_bytes(unsigned char *out, size_t n)
{
	while (n > 0) {
		size_t take;

		if (pool_left == 0) {
			ssize_t got = getrandom(pool, sizeof pool, 0);
			if (got < 0) {
				if (errno == EINTR)
					continue;
				return -1;
			}
			pool_left = (size_t)got;
		}
		take = n < pool_left ? n : pool_left;
		memcpy(out, pool + sizeof pool - pool_left, take);
		pool_left -= take;
		out += take;
		n -= take;
	}
	return 0;
}

/* A lower-case hex digit's value (uuid_canonical() checked it). */
static int
hexval(char c)
{
	return c <= '9' ? c - '0' : c - 'a' + 10;
}

static void
hex_format(const unsigned char b[16], char out[UUID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[o] = '\0';
}

int
uuid_v7(char out[UUID_LEN + 1])
{
	static uint64_t last_ms;
	static unsigned counter;
	unsigned char b[16];
	struct timespec ts;
	uint64_t ms;

	if (random_bytes(b, sizeof b) < 0)
		return -1;
	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (ms <= last_ms) {
		/* Same (or an earlier, after a clock step) millisecond: count up. */
		if (++counter > 0xfff) {
			counter = 0;
			last_ms++;
		}
		ms = last_ms;
	} else {
		/* Start the counter low with a random offset to keep room to count. */
		counter = b[6] & 0x3f;
		last_ms = ms;
	}
	for (int i = 0; i < 6; i++)
		b[i] = (unsigned char)(ms >> (40 - 8 * i));
	b[6] = (unsigned char)(0x70 | (counter >> 8));
	b[7] = (unsigned char)(counter & 0xff);
	b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
	hex_format(b, out);
	return 0;
}

int
uuid_bytes(const char *s, unsigned char out[16])
{
	char c[UUID_LEN + 1];
	int k = 0;

	if (uuid_canonical(s, strlen(s), c) < 0)
		return -1;
	for (int i = 0; i < UUID_LEN; i += 2) {
		if (c[i] == '-')
			i++;
		out[k++] = (unsigned char)(hexval(c[i]) << 4 | hexval(c[i + 1]));
	}
	return 0;
}

int
uuid_canonical(const char *s, size_t n, char out[UUID_LEN + 1])
{
	if (n != UUID_LEN)
		return -1;
	for (size_t i = 0; i < UUID_LEN; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return -1;
			out[i] = c;
		} else if (c >= '0' && c <= '9') {
			out[i] = c;
		} else if (c >= 'a' && c <= 'f') {
			out[i] = c;
		} else if (c >= 'A' && c <= 'F') {
			out[i] = (char)(c - 'A' + 'a');
		} else {
			return -1;
		}
	}
	out[UUID_LEN] = '\0';
	return 0;
}
