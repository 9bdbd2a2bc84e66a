#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "broker.h"
#include "kafka.h"
#include "say.h"

/* Read at most this much per read(2) while no large frame is pending. */
#define SK_READ_CHUNK 65536
#define SK_MAX_IOV    64
/* Input buffer a connection keeps between requests. */
#define SK_KEEP_INPUT (2 * 1024 * 1024)

struct sk_conn {
	struct sk_server *srv;
	uint64_t id;
	int fd;
	ev_io rio, wio;
	ev_timer idle;
	int64_t last_active;  /* monotonic ms of the last read or write */
	struct sk_list link;  /* in srv->conns */
	struct sk_buf in;     /* received bytes not yet dispatched */
	struct sk_list resps; /* struct sk_resp, in request order */
	size_t n_resps;
	size_t out_bytes; /* unsent bytes of queued responses */
	bool reading;	  /* rio started */
	bool draining;	  /* no more requests; close once answered */
	bool dead;	  /* close as soon as conn_pump unwinds */
	bool busy;	  /* inside conn_pump */
	char peer[64];
};

static void conn_close(struct sk_conn *c, const char *why);
static void conn_free(struct sk_conn *c);
static void conn_pump(struct sk_conn *c);

const char *sk_conn_peer(const struct sk_conn *c)
{
	return c->peer;
}

/* --- responses ---------------------------------------------------- */

static struct sk_chunk *resp_new_chunk(struct sk_resp *r)
{
	if (r->n_chunks == r->cap_chunks) {
		r->cap_chunks = r->cap_chunks ? r->cap_chunks * 2 : 4;
		r->chunks = sk_xrealloc(r->chunks,
					r->cap_chunks * sizeof(*r->chunks));
	}
	return &r->chunks[r->n_chunks++];
}

/* Close the open memory chunk, if it has bytes. */
static void resp_seal_mem(struct sk_resp *r)
{
	struct sk_chunk *ch;

	if (r->buf.len == r->mem_start)
		return;
	ch = resp_new_chunk(r);
	ch->seg = NULL;
	ch->off = r->mem_start;
	ch->len = r->buf.len - r->mem_start;
	r->total += ch->len;
	r->mem_start = r->buf.len;
}

void sk_resp_add_slice(struct sk_resp *r, struct sk_log_slice *slice)
{
	struct sk_chunk *ch;

	if (!slice->seg || slice->len == 0) {
		sk_log_slice_release(slice);
		return;
	}
	resp_seal_mem(r);
	ch = resp_new_chunk(r);
	ch->seg = slice->seg;
	ch->off = (size_t)slice->pos;
	ch->len = slice->len;
	r->total += ch->len;
	slice->seg = NULL;
	slice->len = 0;
}

size_t sk_resp_size(const struct sk_resp *r)
{
	return r->total + (r->buf.len - r->mem_start);
}

static void resp_free(struct sk_resp *r)
{
	for (size_t i = 0; i < r->n_chunks; i++)
		if (r->chunks[i].seg)
			sk_segment_unref(r->chunks[i].seg);
	free(r->chunks);
	sk_buf_free(&r->buf);
	free(r);
}

struct resp_defer {
	struct sk_resp *resp;
	int16_t fail;
	size_t n;
	size_t pos[];
};

void *sk_resp_defer(struct sk_resp *r, const size_t *pos, size_t n,
		    int16_t fail)
{
	struct resp_defer *d = sk_xmalloc(sizeof(*d) + n * sizeof(size_t));

	d->resp = r;
	d->fail = fail;
	d->n = n;
	if (n)
		memcpy(d->pos, pos, n * sizeof(size_t));
	return d;
}

void sk_resp_defer_done(void *arg, int rc)
{
	struct resp_defer *d = arg;

	if (rc)
		for (size_t i = 0; i < d->n; i++)
			sk_put_be16(d->resp->buf.data + d->pos[i],
				    (uint16_t)d->fail);
	sk_resp_finish(d->resp);
	free(d);
}

void sk_resp_set_pending(struct sk_resp *r, sk_resp_cancel_fn cancel, void *op)
{
	r->cancel = cancel;
	r->pending = op;
}

void sk_resp_finish(struct sk_resp *r)
{
	struct sk_conn *c = r->conn;

	r->cancel = NULL;
	r->pending = NULL;
	if (!c) {
		resp_free(r);
		return;
	}
	if (r->noreply) {
		r->total = 0;
	} else {
		resp_seal_mem(r);
		/* The frame size excludes its own 4 bytes. */
		sk_put_be32(r->buf.data, (uint32_t)(r->total - 4));
	}
	r->ready = true;
	c->out_bytes += r->total;
	conn_pump(c);
}

void sk_resp_abort(struct sk_resp *r, const char *why)
{
	struct sk_conn *c = r->conn;

	r->cancel = NULL;
	r->pending = NULL;
	if (!c) {
		resp_free(r);
		return;
	}
	/* Nothing to write: the close (now or once pumping ends) frees r. */
	r->noreply = true;
	r->ready = true;
	r->total = 0;
	conn_close(c, why);
}

struct sk_resp *sk_resp_new(struct sk_conn *c)
{
	struct sk_resp *r = sk_xcalloc(1, sizeof(*r));

	r->conn = c;
	sk_list_add_tail(&c->resps, &r->link);
	c->n_resps++;
	return r;
}

void sk_resp_drop(struct sk_resp *r)
{
	if (r->conn) {
		sk_list_del(&r->link);
		r->conn->n_resps--;
	}
	resp_free(r);
}

/* --- writing ------------------------------------------------------ */

/* Drop finished responses from the head of the queue. */
static void pop_done(struct sk_conn *c)
{
	while (!sk_list_empty(&c->resps)) {
		struct sk_resp *r =
			sk_list_first(&c->resps, struct sk_resp, link);
		if (!r->ready || r->sent < r->total)
			break;
		sk_list_del(&r->link);
		c->n_resps--;
		resp_free(r);
	}
}

/* Account n written bytes against the queue head(s). */
static void advance(struct sk_conn *c, size_t n)
{
	struct sk_list *it = c->resps.next;

	c->out_bytes -= n;
	while (n > 0 && it != &c->resps) {
		struct sk_resp *r = sk_container_of(it, struct sk_resp, link);
		size_t take = SK_MIN(n, r->total - r->sent);

		r->sent += take;
		n -= take;
		it = it->next;
	}
}

/* Position inside response r: chunk index and offset in that chunk. */
static void resp_cursor(struct sk_resp *r, size_t *chunk, size_t *off)
{
	size_t at = r->sent;

	for (size_t i = 0; i < r->n_chunks; i++) {
		if (at < r->chunks[i].len) {
			*chunk = i;
			*off = at;
			return;
		}
		at -= r->chunks[i].len;
	}
	*chunk = r->n_chunks;
	*off = 0;
}

/*
 * Write as much as the socket takes. Consecutive memory chunks of ready
 * responses go out in one writev; a segment range goes out by sendfile.
 * A failed write marks the connection dead.
 */
static void write_some(struct sk_conn *c)
{
	for (;;) {
		struct iovec iov[SK_MAX_IOV];
		int n_iov = 0;
		struct sk_chunk *file = NULL;
		size_t file_off = 0;
		ssize_t n;

		pop_done(c);
		for (struct sk_list *it = c->resps.next;
		     it != &c->resps && n_iov < SK_MAX_IOV; it = it->next) {
			struct sk_resp *r =
				sk_container_of(it, struct sk_resp, link);
			size_t ci, off;

			if (!r->ready)
				break;
			resp_cursor(r, &ci, &off);
			for (; ci < r->n_chunks && n_iov < SK_MAX_IOV; ci++) {
				struct sk_chunk *ch = &r->chunks[ci];
				if (ch->seg) {
					if (n_iov == 0) {
						file = ch;
						file_off = off;
					}
					goto gathered;
				}
				iov[n_iov].iov_base =
					r->buf.data + ch->off + off;
				iov[n_iov].iov_len = ch->len - off;
				n_iov++;
				off = 0;
			}
		}
gathered:
		if (file) {
			off_t pos = (off_t)(file->off + file_off);
			n = sendfile(c->fd, sk_segment_fd(file->seg), &pos,
				     file->len - file_off);
			if (n == 0) {
				/* The segment is shorter than promised. */
				conn_close(c, "segment truncated under fetch");
				return;
			}
		} else if (n_iov > 0) {
			n = writev(c->fd, iov, n_iov);
		} else {
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			conn_close(c, strerror(errno));
			return;
		}
		c->last_active = sk_mono_ms();
		advance(c, (size_t)n);
	}
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_pump(sk_container_of(w, struct sk_conn, wio));
}

/* --- reading ------------------------------------------------------ */

/*
 * Read only while the peer keeps up with what it asked for. With its
 * request queue full, a connection still reads into a small input buffer:
 * that bounds memory just as well, and it notices a peer that closed
 * while its long-poll requests wait.
 */
static void conn_update_read(struct sk_conn *c)
{
	const struct sk_config *cfg = &c->srv->b->cfg;
	bool room = c->n_resps < (size_t)cfg->queued_max_requests ||
		    c->in.len < SK_READ_CHUNK;
	bool want = !c->draining && !c->srv->b->stopping && room &&
		    c->out_bytes <= (size_t)cfg->connection_output_max_bytes;

	if (want && !c->reading) {
		ev_io_start(c->srv->b->loop, &c->rio);
		c->reading = true;
	} else if (!want && c->reading) {
		ev_io_stop(c->srv->b->loop, &c->rio);
		c->reading = false;
	}
}

/*
 * Dispatch the complete frames in the input buffer while the connection
 * may take more requests. A bad frame marks the connection dead.
 */
static void dispatch_frames(struct sk_conn *c)
{
	struct sk_broker *b = c->srv->b;
	size_t pos = 0;

	while (!c->dead && !c->draining && c->in.len - pos >= 4 &&
	       c->n_resps < (size_t)b->cfg.queued_max_requests) {
		int32_t size = (int32_t)sk_be32(c->in.data + pos);
		struct sk_err err = { "" };

		if (size <= 0 || size > b->cfg.socket_request_max_bytes) {
			sk_warn("connection %s: request size %d outside "
				"[1, %lld] (socket.request.max.bytes); closing",
				c->peer, size,
				(long long)b->cfg.socket_request_max_bytes);
			c->dead = true;
			break;
		}
		if (c->in.len - pos < 4 + (size_t)size) {
			/* Make room for the whole frame at once. */
			sk_buf_reserve(&c->in,
				       4 + (size_t)size - (c->in.len - pos));
			break;
		}
		if (sk_kafka_dispatch(b, c, c->in.data + pos + 4, (size_t)size,
				      &err) < 0) {
			sk_warn("connection %s: %s; closing", c->peer, err.msg);
			c->dead = true;
			break;
		}
		pos += 4 + (size_t)size;
	}
	if (pos > 0) {
		memmove(c->in.data, c->in.data + pos, c->in.len - pos);
		c->in.len -= pos;
	}
	/*
	 * Give back the memory of an unusually large request. Typical
	 * produce requests (up to ~1 MiB) keep their buffer: shrinking and
	 * regrowing it for every request costs page faults.
	 */
	if (c->in.cap > SK_KEEP_INPUT && c->in.len < SK_READ_CHUNK) {
		c->in.data = sk_xrealloc(c->in.data, SK_READ_CHUNK);
		c->in.cap = SK_READ_CHUNK;
	}
}

/*
 * Move the connection forward: dispatch buffered requests, write ready
 * responses, and repeat while either makes progress (written responses
 * free room for more requests). Then set the watchers to match. The busy
 * flag makes a close from inside this loop wait until it ends.
 */
static void conn_pump(struct sk_conn *c)
{
	if (c->busy)
		return;
	c->busy = true;
	for (;;) {
		size_t in_len = c->in.len, n_resps = c->n_resps;

		dispatch_frames(c);
		if (c->dead)
			break;
		write_some(c);
		if (c->dead)
			break;
		pop_done(c);
		if (c->in.len == in_len && c->n_resps == n_resps)
			break;
	}
	c->busy = false;
	if (c->dead || (c->draining && sk_list_empty(&c->resps))) {
		conn_free(c);
		return;
	}
	if (!sk_list_empty(&c->resps) &&
	    sk_list_first(&c->resps, struct sk_resp, link)->ready) {
		if (!ev_is_active(&c->wio))
			ev_io_start(c->srv->b->loop, &c->wio);
	} else if (ev_is_active(&c->wio)) {
		ev_io_stop(c->srv->b->loop, &c->wio);
	}
	conn_update_read(c);
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sk_conn *c = sk_container_of(w, struct sk_conn, rio);
	ssize_t n;

	(void)loop;
	(void)revents;
	sk_buf_reserve(&c->in, SK_READ_CHUNK);
	n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
	if (n == 0) {
		conn_close(c, NULL);
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_close(c, strerror(errno));
		return;
	}
	c->in.len += (size_t)n;
	c->last_active = sk_mono_ms();
	conn_pump(c);
}

static void on_idle_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_conn *c = sk_container_of(w, struct sk_conn, idle);
	int64_t idle_ms = c->srv->b->cfg.connections_max_idle_ms;
	int64_t left = c->last_active + idle_ms - sk_mono_ms();

	(void)revents;
	if (left <= 0 && sk_list_empty(&c->resps)) {
		sk_info("connection %s idle for %lld ms "
			"(connections.max.idle.ms); closing",
			c->peer, (long long)idle_ms);
		conn_close(c, NULL);
		return;
	}
	w->repeat = (double)(left > 0 ? left : idle_ms) / 1000.0;
	ev_timer_again(loop, w);
}

/* --- lifecycle ---------------------------------------------------- */

static void conn_free(struct sk_conn *c)
{
	struct ev_loop *loop = c->srv->b->loop;

	ev_io_stop(loop, &c->rio);
	ev_io_stop(loop, &c->wio);
	ev_timer_stop(loop, &c->idle);
	while (!sk_list_empty(&c->resps)) {
		struct sk_resp *r =
			sk_list_first(&c->resps, struct sk_resp, link);
		sk_list_del(&r->link);
		r->conn = NULL;
		if (r->cancel)
			r->cancel(r); /* the pending op frees r */
		else if (r->ready || r->noreply)
			resp_free(r);
		/* else: a handler still owns it and frees it on finish */
	}
	sk_list_del(&c->link);
	c->srv->n_conns--;
	close(c->fd);
	sk_buf_free(&c->in);
	free(c);
}

static void conn_close(struct sk_conn *c, const char *why)
{
	if (why)
		sk_info("connection %s closed: %s", c->peer, why);
	c->dead = true;
	if (!c->busy)
		conn_free(c);
}

static void format_peer(const struct sockaddr_storage *ss, char *out,
			size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
		snprintf(out, cap, "%s:%d", host, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
		snprintf(out, cap, "[%s]:%d", host, port);
	} else {
		snprintf(out, cap, "unknown");
	}
}

struct sk_conn *sk_conn_new(struct sk_server *s, int fd)
{
	const struct sk_config *cfg = &s->b->cfg;
	struct sk_conn *c = sk_xcalloc(1, sizeof(*c));

	c->srv = s;
	c->id = s->next_conn_id++;
	c->fd = fd;
	snprintf(c->peer, sizeof(c->peer), "fd %d", fd);
	sk_list_init(&c->resps);
	sk_list_add_tail(&s->conns, &c->link);
	s->n_conns++;
	c->last_active = sk_mono_ms();
	ev_io_init(&c->rio, on_readable, fd, EV_READ);
	ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
	ev_init(&c->idle, on_idle_timer);
	c->idle.repeat = (double)cfg->connections_max_idle_ms / 1000.0;
	ev_timer_again(s->b->loop, &c->idle);
	conn_update_read(c);
	return c;
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sk_server *s = sk_container_of(w, struct sk_server, accept_io);
	const struct sk_config *cfg = &s->b->cfg;

	(void)loop;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct sk_conn *c;
		int one = 1;
		int fd = accept4(s->fd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				sk_warn("accept: %s", strerror(errno));
			return;
		}
		if (s->n_conns >= (size_t)cfg->max_connections) {
			sk_warn("refusing connection: max.connections (%d) "
				"reached",
				cfg->max_connections);
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = sk_conn_new(s, fd);
		format_peer(&ss, c->peer, sizeof(c->peer));
		sk_debug("connection %s accepted", c->peer);
	}
}

/* Split "host:port" / "[v6]:port" into parts. */
static int split_hostport(const char *hp, char *host, size_t cap, char *port,
			  size_t pcap)
{
	const char *colon;

	if (hp[0] == '[') {
		const char *end = strchr(hp, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		snprintf(host, cap, "%.*s", (int)(end - hp - 1), hp + 1);
		colon = end + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon)
			return -EINVAL;
		snprintf(host, cap, "%.*s", (int)(colon - hp), hp);
	}
	snprintf(port, pcap, "%s", colon + 1);
	return 0;
}

int sk_server_open(struct sk_server *s, struct sk_broker *b,
		   const char *hostport, struct sk_err *err)
{
	struct addrinfo hints = { 0 }, *ai = NULL;
	char host[256], port[16];
	int one = 1, rc, fd;

	memset(s, 0, sizeof(*s));
	s->b = b;
	s->fd = -1;
	sk_list_init(&s->conns);
	if (split_hostport(hostport, host, sizeof(host), port, sizeof(port)))
		return sk_err_set(err, "listeners: '%s' is not HOST:PORT",
				  hostport);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (rc)
		return sk_err_set(err, "listeners: cannot resolve '%s': %s",
				  hostport, gai_strerror(rc));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0) {
		rc = sk_err_setc(err, -errno, "socket: %s", strerror(errno));
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		rc = sk_err_setc(err, -errno, "cannot listen on %s: %s",
				 hostport, strerror(errno));
		close(fd);
		goto out;
	}
	s->fd = fd;
	ev_io_init(&s->accept_io, on_accept, fd, EV_READ);
	rc = 0;
out:
	freeaddrinfo(ai);
	return rc;
}

void sk_server_start(struct sk_server *s)
{
	ev_io_start(s->b->loop, &s->accept_io);
}

void sk_server_quiesce(struct sk_server *s)
{
	ev_io_stop(s->b->loop, &s->accept_io);
	for (struct sk_list *it = s->conns.next; it != &s->conns;) {
		struct sk_conn *c = sk_container_of(it, struct sk_conn, link);
		it = it->next;
		c->draining = true;
		conn_update_read(c);
		if (sk_list_empty(&c->resps))
			conn_close(c, NULL);
	}
}

size_t sk_server_pending(const struct sk_server *s)
{
	size_t n = 0;

	for (struct sk_list *it = s->conns.next; it != &s->conns; it = it->next)
		n += sk_container_of(it, struct sk_conn, link)->n_resps;
	return n;
}

void sk_server_close(struct sk_server *s)
{
	if (s->fd >= 0) {
		ev_io_stop(s->b->loop, &s->accept_io);
		close(s->fd);
		s->fd = -1;
	}
	while (!sk_list_empty(&s->conns))
		conn_free(sk_list_first(&s->conns, struct sk_conn, link));
}
