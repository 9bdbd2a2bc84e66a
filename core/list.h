/*
 * An intrusive circular doubly-linked list: the link lives inside the
 * owning struct, so adding and removing never allocates.
 */
#ifndef SK_LIST_H
#define SK_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct sk_list {
	struct sk_list *next, *prev;
};

static inline void sk_list_init(struct sk_list *h)
{
	h->next = h->prev = h;
}

static inline bool sk_list_empty(const struct sk_list *h)
{
	return h->next == h;
}

/* Is the node linked into some list? (Nodes are init'ed when unlinked.) */
static inline bool sk_list_linked(const struct sk_list *n)
{
	return n->next != n;
}

static inline void sk_list_add_tail(struct sk_list *h, struct sk_list *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

/* Unlink n and leave it self-linked, so removing twice is harmless. */
static inline void sk_list_del(struct sk_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

/* Move every node of from to the tail of to, leaving from empty. */
static inline void sk_list_splice(struct sk_list *to, struct sk_list *from)
{
	if (sk_list_empty(from))
		return;
	from->next->prev = to->prev;
	to->prev->next = from->next;
	from->prev->next = to;
	to->prev = from->prev;
	sk_list_init(from);
}

#define sk_list_first(h, type, member) \
	((type *)(void *)((char *)(h)->next - offsetof(type, member)))

#endif
