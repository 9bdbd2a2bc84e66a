/*
 * A growable byte buffer, the unit in which responses are built.
 */
#ifndef SK_BUF_H
#define SK_BUF_H

#include "util.h"

struct sk_buf {
	uint8_t *data; /* owned; NULL while cap == 0 */
	size_t len;    /* bytes in use */
	size_t cap;    /* bytes allocated */
};

/* Make room for at least n more bytes. */
void sk_buf_reserve(struct sk_buf *b, size_t n);
/* Append n bytes. */
void sk_buf_put(struct sk_buf *b, const void *p, size_t n);
/* Grow len by n and return a pointer to the new (uninitialised) bytes. */
uint8_t *sk_buf_extend(struct sk_buf *b, size_t n);
/* Release the memory and reset to empty. */
void sk_buf_free(struct sk_buf *b);

#endif
