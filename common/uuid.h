/*
 * uuid.h: UUIDs in their canonical text form (36 characters, lower case).
 */
#ifndef INFONCHAT_UUID_H
#define INFONCHAT_UUID_H

#include <stddef.h>

#define UUID_LEN 36

/*
 * Write a new UUIDv7 (RFC 9562: 48-bit Unix milliseconds, then a 12-bit
 * counter that keeps ids from one process strictly increasing within a
 * millisecond, then 62 random bits) as 36 characters plus NUL into out.
 * Returns 0, or -1 when the kernel gave no randomness.
 */
int uuid_v7(char out[UUID_LEN + 1]);

/*
 * Accept s[0..n) when it is exactly the 8-4-4-4-12 hex form, any case, and
 * write it lower-cased with a NUL into out. Returns 0, or -1 for any other form.
 */
int uuid_canonical(const char *s, size_t n, char out[UUID_LEN + 1]);

/*
 * The 16 bytes of the UUID whose 8-4-4-4-12 text (any case, NUL-terminated)
 * is s: the binary form PostgreSQL's uuid type sends and receives. Returns 0,
 * or -1 when s is not that form.
 */
int uuid_bytes(const char *s, unsigned char out[16]);

#endif
