/*
 * Kafka listener and connections on the libev loop.
 *
 * A connection reads size-prefixed frames (the size is checked against
 * socket.request.max.bytes before anything is allocated), hands each to
 * the dispatcher, and writes responses strictly in request order even
 * when some complete later than others (long-poll Fetch). A response is a
 * list of chunks: bytes in memory, or a byte range of a log segment that
 * goes out with sendfile(2).
 *
 * Backpressure: the connection stops reading while it has
 * queued.max.requests responses outstanding or more than
 * connection.output.max.bytes waiting to be written, and resumes as the
 * peer drains them.
 */
#ifndef SK_NET_H
#define SK_NET_H

#include <ev.h>

#include "buf.h"
#include "list.h"
#include "log.h"

struct sk_broker;
struct sk_conn;
struct sk_resp;

/* Called when a pending response's connection goes away. */
typedef void (*sk_resp_cancel_fn)(struct sk_resp *resp);

/* One piece of a response: memory in resp->buf, or a segment range. */
struct sk_chunk {
	struct sk_segment *seg; /* NULL: bytes [off, off+len) of resp->buf */
	size_t off;		/* buffer offset, or file position */
	size_t len;
};

/* A response slot, queued in request order on its connection. */
struct sk_resp {
	struct sk_list link;	 /* in conn->resps */
	struct sk_conn *conn;	 /* NULL once the connection is gone */
	struct sk_buf buf;	 /* frame size, header and in-memory body */
	struct sk_chunk *chunks; /* pieces in order */
	size_t n_chunks, cap_chunks;
	size_t mem_start;	  /* start of the open memory chunk */
	size_t total;		  /* bytes of all chunks */
	size_t sent;		  /* bytes already written */
	size_t cur;		  /* chunk being written */
	bool ready;		  /* complete; may be written */
	bool noreply;		  /* Produce acks=0: nothing to send */
	sk_resp_cancel_fn cancel; /* set while completion is pending */
	void *pending;		  /* the pending operation, for cancel */
};

/* The listener and every open connection; embedded in the broker. */
struct sk_server {
	struct sk_broker *b;
	int fd;
	ev_io accept_io;
	struct sk_list conns; /* struct sk_conn */
	size_t n_conns;
	uint64_t next_conn_id;
};

/* Bind and listen on cfg listeners ("HOST:PORT"); not yet accepting. */
int sk_server_open(struct sk_server *s, struct sk_broker *b,
		   const char *hostport, struct sk_err *err);
/* Start accepting connections. */
void sk_server_start(struct sk_server *s);
/* Stop accepting and stop reading new requests on every connection. */
void sk_server_quiesce(struct sk_server *s);
/* Responses still queued or pending on any connection. */
size_t sk_server_pending(const struct sk_server *s);
/*
 * Adopt a connected, non-blocking socket as a Kafka connection (accept
 * uses it; so do tests and the fuzzer, with one end of a socketpair).
 */
struct sk_conn *sk_conn_new(struct sk_server *s, int fd);
/* Close the listener and every connection. */
void sk_server_close(struct sk_server *s);

/* Queue a new, not yet ready, response slot (the dispatcher's job). */
struct sk_resp *sk_resp_new(struct sk_conn *c);
/* Unqueue and free a slot whose request turned out to be malformed. */
void sk_resp_drop(struct sk_resp *r);

/* A writer appending to the response's memory. */
static inline struct sk_wr sk_resp_writer(struct sk_resp *r)
{
	return (struct sk_wr){ &r->buf };
}
/* Append a segment range; takes over the slice's segment reference. */
void sk_resp_add_slice(struct sk_resp *r, struct sk_log_slice *slice);
/* Bytes the response will have once finished (for Fetch budgets). */
size_t sk_resp_size(const struct sk_resp *r);
/*
 * The response is complete: patch the frame size and let the connection
 * write it when its turn comes. If the connection is gone, frees it.
 */
void sk_resp_finish(struct sk_resp *r);
/*
 * The request failed and has no response to say so (Produce acks=0):
 * close the connection instead, as Kafka does; frees r.
 */
void sk_resp_abort(struct sk_resp *r, const char *why);
/*
 * A response whose answer waits for a durable write (metadata, offsets):
 * sk_resp_defer returns the argument for the writer's completion callback
 * sk_resp_defer_done(arg, rc), which finishes r; when rc is not 0 it
 * first overwrites the int16 error codes at byte positions pos[0..n) of
 * r's buffer with fail.
 */
void *sk_resp_defer(struct sk_resp *r, const size_t *pos, size_t n,
		    int16_t fail);
void sk_resp_defer_done(void *arg, int rc);
/* Mark as pending: cancel(resp) runs if the connection closes first. */
void sk_resp_set_pending(struct sk_resp *r, sk_resp_cancel_fn cancel, void *op);

/* Peer address of the connection, for log lines. */
const char *sk_conn_peer(const struct sk_conn *c);

#endif
