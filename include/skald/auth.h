/*
 * Skald plugin ABI: authentication and authorization (reserved).
 *
 * PROVISIONAL. ABI 1.0 has no register_sasl or register_authorizer in
 * struct skald_host, so no plugin can provide these yet, and the shapes
 * below may still change without a major version bump. They become part
 * of the ABI, frozen by the rules of version.h, in the minor version that
 * appends their register_* members to struct skald_host (the CHANGELOG's
 * ABI section will say which).
 *
 * Compiles alone as C99 or later and as C++11 or later.
 */
#ifndef SKALD_AUTH_H
#define SKALD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One SASL exchange on one connection. Opaque. */
struct skald_sasl_session;

/* skald_sasl_ops.step results */
#define SKALD_SASL_CONTINUE 1 /* send the challenge, expect more */
#define SKALD_SASL_DONE 0     /* authenticated as *principal */

/* A SASL mechanism ("SCRAM-SHA-256", "OAUTHBEARER", ...). */
struct skald_sasl_ops {
	uint32_t size;            /* sizeof(struct skald_sasl_ops) */
	uint32_t flags;
	const char *mechanism;    /* IANA name, upper case */
	/* Loop thread; may defer with host->submit like a tier operation. */
	int (*step)(void *mech, struct skald_sasl_session *session,
		    const void *in, size_t in_len);
};

/* One authorization question: may principal do operation on resource? */
struct skald_authz_request {
	uint32_t size;            /* sizeof, host's */
	int32_t operation;        /* Kafka AclOperation code */
	int32_t resource_type;    /* Kafka ResourceType code */
	int32_t reserved;
	const char *resource;     /* topic, group, ... name */
	const char *principal;    /* "User:alice" */
	const char *host;         /* client address */
};

/* An authorizer: answers 1 (allow), 0 (deny) or a negative errno. */
struct skald_authorizer_ops {
	uint32_t size;
	uint32_t flags;
	/* Loop thread, must not block (cache decisions). */
	int (*authorize)(void *authz, const struct skald_authz_request *req);
};

#ifdef __cplusplus
}
#endif

#endif
