/*
 * fuzz_util.h - helpers shared by the libFuzzer targets of tests/fuzz:
 * a NUL-terminated copy of the input and a property check that aborts
 * (so libFuzzer records the input) when a parser's promise is broken.
 */
#ifndef MXB_FUZZ_UTIL_H
#define MXB_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* fz_strndup - the input as a C string (stops at the first NUL) */
static inline char *
fz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

#define FZ_CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, \
		        __LINE__, #cond); \
		abort(); \
	} \
} while (0)

/* fz_clean - s holds no control byte (CR, LF, NUL before its end, ...) */
static inline int
fz_clean(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);

	if (n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 32 || s[i] == 127)
			return 0;
	return 1;
}

#endif
