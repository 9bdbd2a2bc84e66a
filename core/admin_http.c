/*
 * The admin HTTP listener (see admin_http.h).
 *
 * We bind the socket ourselves, as the Kafka listener does, so that a
 * failure says exactly why (errno), then hand it to libmicrohttpd with
 * MHD_OPTION_LISTEN_SOCKET; from then on the daemon owns it and closes
 * it in MHD_stop_daemon.
 *
 * Every request is answered on its first call, from the headers alone:
 * a request body is never read (a request announcing one gets 413 and
 * the connection is closed), so uploads cost nothing. The connection
 * count, the memory per connection (headers) and an idle timeout bound
 * what clients can hold.
 *
 * What only the event loop may start (reloading hooks) is handed to it:
 * the request is queued and its connection suspended, an ev_async wakes
 * the loop, which starts the reload and, when it is over, resumes the
 * connection, whose next call answers it. The server thread never waits
 * for the loop (other requests, /metrics, are served meanwhile), nor the
 * loop for it; closing (on the loop) answers whatever is queued or under
 * way with 503 and gives the server thread a moment to send those
 * answers before stopping it.
 */
#include "admin_http.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "broker.h"
#include "buf.h"
#include "hook.h"
#include "list.h"
#include "metrics.h"
#include "say.h"

/* Concurrent connections; more wait in the listen backlog. */
#define SK_ADMIN_MAX_CONNS 32
/* Seconds a connection may stay idle (or trickle a request). */
#define SK_ADMIN_TIMEOUT_S 30
/* Memory per connection: the request line and headers must fit. */
#define SK_ADMIN_CONN_MEMORY (16 * 1024)
/* Bytes of an unknown path echoed back in a 404. */
#define SK_ADMIN_PATH_ECHO 200
/* How long closing waits for the 503s of pending reloads to be sent. */
#define SK_ADMIN_DRAIN_MS 1000

#define SK_ADMIN_PROM_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define SK_ADMIN_JSON_TYPE "application/json"

/*
 * A reload request, handed to the loop: the request's state in MHD
 * (req_cls) from the call that queues it until MHD says the request is
 * over (on_completed). Between, its connection is suspended; the loop
 * (or closing) writes status and out under sk_admin.mu, then resumes it.
 */
struct reload_call {
	struct sk_list link; /* in sk_admin.calls, then .running */
	struct sk_admin *a;
	struct MHD_Connection *conn;
	struct sk_hook_reload_wait wait;
	struct sk_buf out; /* the JSON body */
	unsigned status;
};

struct sk_admin {
	struct MHD_Daemon *d;
	struct sk_broker *b;
	/* The registry served; the broker's, which outlives us. */
	struct sk_metrics *metrics;
	/* Set once serving: MHD's messages are then about clients. */
	atomic_bool started;
	/* Requests for the loop, and their hand-off (see the top). */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sk_list calls;	/* queued for the loop */
	struct sk_list running; /* the loop started them */
	unsigned n_calls;	/* reload_calls not yet completed */
	bool closing;
	ev_async wake;
};

/*
 * libmicrohttpd's own messages: while starting, why it could not (epoll,
 * thread), as warnings; once serving, what a client did wrong (headers
 * too big, a reset), at debug level so that no client can fill the log.
 */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct sk_admin *a = cls;
	char msg[300];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	sk_say(atomic_load(&a->started) ? SK_SAY_DEBUG : SK_SAY_WARN,
	       "admin: %s", msg);
}

/* Queue a response whose body is body[0, len) (taken: freed by MHD). */
static enum MHD_Result answer(struct MHD_Connection *conn, unsigned int status,
			      const char *type, char *body, size_t len,
			      const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, body,
					       MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO; /* MHD closes the connection */
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
				"no-store");
	if (allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* {"error":"<what><s>"} with s JSON-escaped and cut to max bytes. */
static char *json_error(const char *what, const char *s, size_t max)
{
	struct sk_buf b = { 0 };
	char esc[8];

	sk_buf_put(&b, "{\"error\":\"", 10);
	sk_buf_put(&b, what, strlen(what));
	for (size_t i = 0; s[i] && i < max; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			sk_buf_put(&b, esc, 2);
		} else if (ch < 0x20 || ch >= 0x7f) {
			/* Bytes, not characters: the path may not be UTF-8. */
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
			sk_buf_put(&b, esc, 6);
		} else {
			sk_buf_put(&b, &s[i], 1);
		}
	}
	sk_buf_put(&b, "\"}\n", 4); /* with the NUL, for strlen */
	return (char *)b.data;
}

static enum MHD_Result answer_json_error(struct MHD_Connection *conn,
					 unsigned int status, const char *what,
					 const char *s, const char *allow)
{
	char *body = json_error(what, s, SK_ADMIN_PATH_ECHO);

	return answer(conn, status, SK_ADMIN_JSON_TYPE, body, strlen(body),
		      allow);
}

/*
 * Hand a reload to the loop: a new call, its connection suspended until
 * the loop answers it. Server thread. False (nothing queued): closing.
 */
static bool queue_call(struct sk_admin *a, struct MHD_Connection *conn,
		       void **req_cls)
{
	struct reload_call *call = sk_xcalloc(1, sizeof(*call));

	call->a = a;
	call->conn = conn;
	sk_list_init(&call->wait.link);
	*req_cls = call; /* freed by on_completed */
	pthread_mutex_lock(&a->mu);
	a->n_calls++;
	if (a->closing) {
		call->status = MHD_HTTP_SERVICE_UNAVAILABLE;
		pthread_mutex_unlock(&a->mu);
		return false;
	}
	/* Suspended before the loop can see it, so never resumed first. */
	MHD_suspend_connection(conn);
	sk_list_add_tail(&a->calls, &call->link);
	pthread_mutex_unlock(&a->mu);
	ev_async_send(a->b->loop, &a->wake);
	return true;
}

/* MHD is done with a request (answered, or its connection gone). */
static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode why)
{
	struct sk_admin *a = cls;
	struct reload_call *call = *req_cls;

	(void)conn;
	(void)why;
	if (!call || (void *)call == (void *)a)
		return;
	sk_buf_free(&call->out);
	free(call);
	pthread_mutex_lock(&a->mu);
	a->n_calls--;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* The reload is over (loop thread): the JSON answer, and resume it. */
static void on_reloaded(struct sk_hook_reload_wait *w, int rc, const char *msg)
{
	struct reload_call *call = sk_container_of(w, struct reload_call, wait);
	struct sk_admin *a = call->a;
	char n[32];
	char *body;

	if (rc) {
		body = json_error("", msg, strlen(msg));
		sk_buf_put(&call->out, body, strlen(body));
		free(body);
		call->status = rc == -ESHUTDOWN
				       ? MHD_HTTP_SERVICE_UNAVAILABLE
				       : MHD_HTTP_UNPROCESSABLE_CONTENT;
	} else {
		snprintf(n, sizeof(n), "%zu", a->b->hooks.scripts.count);
		sk_buf_put(&call->out, "{\"reloaded\":true,\"scripts\":", 27);
		sk_buf_put(&call->out, n, strlen(n));
		sk_buf_put(&call->out, "}\n", 2);
		call->status = MHD_HTTP_OK;
	}
	pthread_mutex_lock(&a->mu);
	sk_list_del(&call->link);
	pthread_mutex_unlock(&a->mu);
	MHD_resume_connection(call->conn);
}

/* The loop's side: start a reload for every queued request. */
static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
	struct sk_admin *a = w->data;
	struct reload_call *call;

	(void)loop;
	(void)revents;
	for (;;) {
		pthread_mutex_lock(&a->mu);
		call = NULL;
		if (!sk_list_empty(&a->calls)) {
			call = sk_list_first(&a->calls, struct reload_call,
					     link);
			sk_list_del(&call->link);
			sk_list_add_tail(&a->running, &call->link);
		}
		pthread_mutex_unlock(&a->mu);
		if (!call)
			return;
		call->wait.done = on_reloaded;
		sk_hooks_reload_start(a->b, "admin /v1/hooks/reload",
				      &call->wait);
	}
}

/* Whether the request announces a body (which is never read). */
static bool has_body(struct MHD_Connection *conn)
{
	const char *len = MHD_lookup_connection_value(
		conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

	if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					MHD_HTTP_HEADER_TRANSFER_ENCODING))
		return true;
	return len && strspn(len, "0") != strlen(len);
}

/*
 * MHD's request callback, on its thread. The first call has the
 * headers. A request without a body is answered on the second call,
 * when MHD knows it complete, so that the connection can be kept alive;
 * one with a body is answered at once, unread, and the connection then
 * closed.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct sk_admin *a = cls;
	struct sk_buf out = { 0 };

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	if (!*req_cls && !has_body(conn)) {
		*req_cls = a;
		return MHD_YES;
	}
	if (*req_cls && *req_cls != (void *)a) {
		/* A reload call, resumed: its answer is there. */
		struct reload_call *call = *req_cls;
		struct sk_buf body = { 0 };
		unsigned status;

		pthread_mutex_lock(&a->mu);
		status = call->status;
		body = call->out; /* the answer takes it */
		call->out = (struct sk_buf){ 0 };
		pthread_mutex_unlock(&a->mu);
		if (!body.len) {
			sk_buf_free(&body);
			return answer_json_error(conn, status,
						 "the broker is stopping", "",
						 NULL);
		}
		return answer(conn, status, SK_ADMIN_JSON_TYPE,
			      (char *)body.data, body.len, NULL);
	}
	if (strcmp(url, "/v1/hooks/reload") == 0) {
		if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
			return answer_json_error(
				conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				"method not allowed: ", method, "POST");
		if (has_body(conn))
			return answer_json_error(
				conn, MHD_HTTP_CONTENT_TOO_LARGE,
				"request bodies are not accepted", "", NULL);
		if (queue_call(a, conn, req_cls))
			return MHD_YES; /* answered once resumed */
		return answer_json_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
					 "the broker is stopping", "", NULL);
	}
	if (strcmp(url, "/metrics") != 0)
		return answer_json_error(conn, MHD_HTTP_NOT_FOUND,
					 "no such path: ", url, NULL);
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return answer_json_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
					 "method not allowed: ", method,
					 "GET, HEAD");
	if (has_body(conn))
		return answer_json_error(conn, MHD_HTTP_CONTENT_TOO_LARGE,
					 "request bodies are not accepted", "",
					 NULL);
	sk_metrics_render(a->metrics, &out);
	return answer(conn, MHD_HTTP_OK, SK_ADMIN_PROM_TYPE, (char *)out.data,
		      out.len, NULL);
}

/* Split HOST:PORT or [V6]:PORT (as the config validated it). */
static int split_listener(const char *hp, char *host, size_t hcap, char *port,
			  size_t pcap)
{
	const char *colon = strrchr(hp, ':');
	const char *h = hp;
	size_t hlen;

	if (!colon)
		return -EINVAL;
	hlen = (size_t)(colon - hp);
	if (hp[0] == '[' && hlen >= 2 && hp[hlen - 1] == ']') {
		h = hp + 1;
		hlen -= 2;
	}
	if (hlen >= hcap || strlen(colon + 1) >= pcap)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	snprintf(port, pcap, "%s", colon + 1);
	return 0;
}

/* A listening, non-blocking socket on hp, or -errno with err set. */
static int bind_listener(const char *hp, struct sk_err *err)
{
	struct addrinfo hints = { 0 }, *ai = NULL;
	char host[256], port[16];
	int one = 1, rc, fd;

	if (split_listener(hp, host, sizeof(host), port, sizeof(port)))
		return sk_err_set(err, "admin.listener: '%s' is not HOST:PORT",
				  hp);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc)
		return sk_err_set(err, "admin.listener %s: cannot resolve: %s",
				  hp, gai_strerror(rc));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0) {
		rc = sk_err_setc(err, -errno, "admin.listener %s: socket: %s",
				 hp, strerror(errno));
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		rc = sk_err_setc(err, -errno, "admin.listener %s: %s", hp,
				 strerror(errno));
		close(fd);
		goto out;
	}
	rc = fd;
out:
	freeaddrinfo(ai);
	return rc;
}

/* The port the daemon listens on (the kernel's choice for port 0). */
static unsigned bound_port(struct MHD_Daemon *d, int fd)
{
	const union MHD_DaemonInfo *info;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char port[16];

	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (info && info->port)
		return info->port;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, NULL, 0, port, sizeof(port),
			NI_NUMERICSERV) == 0)
		return (unsigned)atoi(port);
	return 0;
}

int sk_admin_open(struct sk_admin **out, struct sk_broker *b,
		  const char *listener, struct sk_err *err)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD |
			     MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
	struct sk_admin *a;
	char host[256], port[16];
	bool v6;
	int fd;

	*out = NULL;
	if (!listener || !*listener)
		return 0;
	fd = bind_listener(listener, err);
	if (fd < 0)
		return fd;
	flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES
			 ? MHD_USE_EPOLL
			 : MHD_USE_POLL;
	a = sk_xcalloc(1, sizeof(*a));
	a->b = b;
	a->metrics = b->metrics;
	atomic_init(&a->started, false);
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	sk_list_init(&a->calls);
	sk_list_init(&a->running);
	ev_async_init(&a->wake, on_wake);
	a->wake.data = a;
	ev_async_start(b->loop, &a->wake);
	/* The logger first, so that start-up messages go through it. */
	a->d = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER,
		on_mhd_log, a, MHD_OPTION_LISTEN_SOCKET, fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)SK_ADMIN_MAX_CONNS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)SK_ADMIN_TIMEOUT_S,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)SK_ADMIN_CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED,
		on_completed, a, MHD_OPTION_END);
	if (!a->d) {
		/* Not started: the socket is still ours (so 0.9.75 does). */
		close(fd);
		ev_async_stop(b->loop, &a->wake);
		pthread_cond_destroy(&a->cv);
		pthread_mutex_destroy(&a->mu);
		free(a);
		return sk_err_set(err,
				  "admin.listener %s: the HTTP server did not "
				  "start (see the log)",
				  listener);
	}
	atomic_store(&a->started, true);
	if (split_listener(listener, host, sizeof(host), port, sizeof(port)))
		host[0] = '\0';
	v6 = strchr(host, ':') != NULL;
	sk_info("admin listening on %s%s%s:%u", v6 ? "[" : "", host,
		v6 ? "]" : "", bound_port(a->d, fd));
	*out = a;
	return 0;
}

void sk_admin_close(struct sk_admin *a)
{
	struct sk_list answered;
	struct timespec until;

	if (!a)
		return;
	/*
	 * Answer what the loop will not run (503), resume those requests,
	 * and give the server thread a moment to send the answers.
	 */
	sk_list_init(&answered);
	pthread_mutex_lock(&a->mu);
	a->closing = true;
	sk_list_splice(&a->calls, &a->running);
	while (!sk_list_empty(&a->calls)) {
		struct reload_call *call =
			sk_list_first(&a->calls, struct reload_call, link);

		sk_list_del(&call->link);
		sk_hooks_reload_cancel(&call->wait);
		call->status = MHD_HTTP_SERVICE_UNAVAILABLE;
		sk_list_add_tail(&answered, &call->link);
	}
	/* Resumed outside the lock: MHD takes its own. */
	pthread_mutex_unlock(&a->mu);
	while (!sk_list_empty(&answered)) {
		struct reload_call *call =
			sk_list_first(&answered, struct reload_call, link);

		sk_list_del(&call->link);
		MHD_resume_connection(call->conn);
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += SK_ADMIN_DRAIN_MS / 1000;
	until.tv_nsec += (long)(SK_ADMIN_DRAIN_MS % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&a->mu);
	while (a->n_calls &&
	       pthread_cond_timedwait(&a->cv, &a->mu, &until) == 0)
		;
	pthread_mutex_unlock(&a->mu);
	MHD_stop_daemon(a->d);
	ev_async_stop(a->b->loop, &a->wake);
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	free(a);
}
