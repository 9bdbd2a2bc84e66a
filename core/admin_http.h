/*
 * The admin HTTP listener (admin.listener, default 127.0.0.1:9644):
 * GET /metrics answers the metrics registry in Prometheus' text format.
 *
 * libmicrohttpd serves it on a thread of its own (its internal polling
 * thread, epoll where available), never on the event loop. That thread
 * reads only state that is safe to read from any thread: today the
 * metrics registry (metrics.h: a mutex around registration and render,
 * atomic values). Anything added here must be as safe, or handed over
 * to the loop explicitly.
 */
#ifndef SK_ADMIN_HTTP_H
#define SK_ADMIN_HTTP_H

#include "util.h"

struct sk_broker;
struct sk_admin;

/*
 * Bind listener (HOST:PORT as validated by the config, port 0 for any
 * free port) and start serving b->metrics; log the address actually
 * bound. An empty listener starts nothing: 0 with *out NULL. On failure
 * err names admin.listener and the address, and nothing is left open.
 * b->metrics must outlive the listener: sk_admin_close() before it is
 * freed.
 */
int sk_admin_open(struct sk_admin **out, struct sk_broker *b,
		  const char *listener, struct sk_err *err);
/*
 * Stop serving: answer pending hook reloads 503 (waiting up to a second
 * for those answers to go out), close the listening socket and every
 * connection, and wait for the server thread (a request being answered
 * completes first). Safe with NULL.
 */
void sk_admin_close(struct sk_admin *a);

#endif
