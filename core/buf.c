#include "buf.h"

#include <stdlib.h>
#include <string.h>

void sk_buf_reserve(struct sk_buf *b, size_t n)
{
	size_t cap;

	if (b->cap - b->len >= n)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	b->data = sk_xrealloc(b->data, cap);
	b->cap = cap;
}

void sk_buf_put(struct sk_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	memcpy(sk_buf_extend(b, n), p, n);
}

uint8_t *sk_buf_extend(struct sk_buf *b, size_t n)
{
	uint8_t *p;

	sk_buf_reserve(b, n);
	p = b->data + b->len;
	b->len += n;
	return p;
}

void sk_buf_free(struct sk_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
