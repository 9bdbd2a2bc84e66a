/*
 * Skald plugin ABI: the descriptor every plugin exports.
 *
 * A plugin is a shared object that exports exactly one data symbol,
 *
 *	const struct skald_plugin_desc skald_plugin_desc = { ... };
 *
 * The broker reads and checks it before running any plugin function:
 *   1. abi_major equals the broker's SKALD_ABI_MAJOR;
 *   2. abi_minor is at most the broker's SKALD_ABI_MINOR;
 *   3. desc_size is at least SKALD_PLUGIN_DESC_V1_SIZE and at most the
 *      broker's sizeof(struct skald_plugin_desc);
 *   4. build_sig equals the broker's SKALD_BUILD_SIG;
 *   5. name matches [a-z][a-z0-9_-]{0,63} and no other plugin has it;
 *   6. the plugin's `config:` mapping from the YAML file satisfies
 *      config_schema.
 * A refusal stops the broker with a message naming the file and saying
 * what was expected and what was found. Only then is init() called.
 *
 * Lifecycle, all on the event-loop thread:
 *   init(host, config, &state, err)  once, before the loop runs; the place
 *                                    to register capabilities. Non-zero
 *                                    refuses the start (err says why);
 *                                    fini is then not called.
 *   start(state, err)                once, from inside the running loop.
 *                                    Non-zero stops the broker.
 *   stop(state)                      once, when the broker stops: start no
 *                                    new work, finish what is in flight
 *                                    (the host keeps the loop, post and
 *                                    submit running until it is done), and
 *                                    delete timers.
 *   fini(state)                      once, after stop and after every
 *                                    operation completed: release
 *                                    everything. The shared object is
 *                                    unloaded after fini returns.
 * Every callback may be NULL. stop is called even when start was not
 * (init succeeded but another plugin's init failed).
 *
 * Trust: a plugin is native code in the broker's process. It is not
 * sandboxed and a crash in it is a crash of the broker; only Lua hooks are
 * sandboxed. Load plugins you would link into the broker yourself. A
 * plugin must not have ELF constructors (or C++ static initialisers with
 * side effects): the dynamic loader runs those before the checks above.
 *
 * Errors: functions return 0 or a negative errno, with text in struct
 * skald_error where one is passed. A plugin never calls exit() or abort()
 * and never lets a C++ exception cross into the broker: wrap every entry
 * point in try/catch.
 *
 * Compiles alone as C99 or later and as C++11 or later.
 */
#ifndef SKALD_PLUGIN_H
#define SKALD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
/* printf format checking of a function (or function pointer) declaration */
#define SKALD_PRINTF(f, a) __attribute__((format(printf, f, a)))
/* Make a definition visible outside a -fvisibility=hidden shared object. */
#define SKALD_EXPORT __attribute__((visibility("default")))
#define SKALD__ALIGNOF(t) __alignof__(t)
#else
#define SKALD_PRINTF(f, a)
#define SKALD_EXPORT
#if defined(__cplusplus)
#define SKALD__ALIGNOF(t) alignof(t)
#else
#define SKALD__ALIGNOF(t) _Alignof(t)
#endif
#endif

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && \
	__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define SKALD__BYTE_ORDER 2u
#elif defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
	__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SKALD__BYTE_ORDER 1u
#else
#define SKALD__BYTE_ORDER 0u
#endif

/*
 * Facts of the compiler and platform that change the layout of the ABI's
 * structs, and nothing else (no feature flags, no compiler version): one
 * hexadecimal digit each, below a fixed tag 0x5a in the top byte.
 *   bits  0..3   sizeof(void *)
 *   bits  4..7   sizeof(size_t)
 *   bits  8..11  sizeof(long)
 *   bits 12..15  alignment of int64_t
 *   bits 16..19  sizeof(time_t)
 *   bits 20..23  byte order: 1 little-endian, 2 big-endian, 0 unknown
 * The broker prints which of them differ when it refuses a plugin.
 * Sanitizers are not part of it: a plugin built without ASan loads into
 * an ASan broker, and the opposite fails in dlopen with the loader's own
 * message.
 */
#define SKALD_BUILD_SIG                                                 \
	((uint32_t)(0x5a000000u | (SKALD__BYTE_ORDER << 20) |           \
		    ((uint32_t)sizeof(time_t) << 16) |                  \
		    ((uint32_t)SKALD__ALIGNOF(int64_t) << 12) |         \
		    ((uint32_t)sizeof(long) << 8) |                     \
		    ((uint32_t)sizeof(size_t) << 4) |                   \
		    (uint32_t)sizeof(void *)))

/*
 * Error detail: a plugin that fails writes a sentence here (the broker
 * prefixes the plugin's file and name). Layout frozen for ABI major 1.
 */
struct skald_error {
	char msg[256];
};

/* The broker's services, one table per loaded plugin: see host.h. */
struct skald_host;
/* The plugin's validated configuration; read it through host.h. */
struct skald_config;

/* What a plugin provides: bits of skald_plugin_desc.provides. */
#define SKALD_PROVIDES_GENERIC 0x01u      /* none of those below */
#define SKALD_PROVIDES_STORAGE_TIER 0x02u /* register_storage_tier */
#define SKALD_PROVIDES_SASL 0x04u         /* reserved: a SASL mechanism */
#define SKALD_PROVIDES_AUTHORIZER 0x08u   /* reserved: an authorizer */
#define SKALD_PROVIDES_INDEXER 0x10u      /* reserved: a search indexer */

/* Types of a config key (skald_config_key.type). */
enum skald_config_type {
	/* exactly "true" or "false" */
	SKALD_CONFIG_BOOL = 1,
	/* a whole decimal integer in [min, max] */
	SKALD_CONFIG_INT = 2,
	/* text of length in [min, max], one of choices[] when given */
	SKALD_CONFIG_STRING = 3
};

/* skald_config_key.flags */
#define SKALD_CONFIG_REQUIRED 0x1u /* must be given; def is ignored */
#define SKALD_CONFIG_SECRET 0x2u   /* never printed (passwords, keys) */

/*
 * One key of a plugin's config schema: the same shape as the broker's own
 * key tables (name, type, default, bounds, doc). The broker validates the
 * YAML mapping against it before init, reporting FILE:LINE: KEY: problem,
 * and rejects keys the schema does not name. The layout is frozen for ABI
 * major 1 (the broker steps through the array with this size); new kinds
 * of value will be new type values.
 */
struct skald_config_key {
	const char *name;   /* [a-z0-9._-]+, unique within the schema */
	uint32_t type;      /* enum skald_config_type */
	uint32_t flags;     /* SKALD_CONFIG_* */
	/*
	 * The value when the key is not given, written as in YAML ("10",
	 * "true", "us-east-1"); NULL: the key has no value unless given.
	 * Validated like a given value when the plugin is loaded.
	 */
	const char *def;
	int64_t min, max;   /* INT: value bounds; STRING: length bounds */
	/* STRING: the allowed values, NULL-terminated; NULL allows any */
	const char *const *choices;
	const char *doc;    /* one or two sentences for the docs */
};

/*
 * The descriptor. Fields are only ever appended (see version.h); the
 * broker reads the first desc_size bytes and treats what lies beyond as
 * absent. Fill the first four with SKALD_PLUGIN_ABI.
 */
struct skald_plugin_desc {
	/* 1. ABI version: always first, never moved. */
	uint32_t abi_major; /* SKALD_ABI_MAJOR */
	uint32_t abi_minor; /* SKALD_ABI_MINOR */
	/* 2. sizeof(struct skald_plugin_desc) as the plugin compiled it */
	uint32_t desc_size;
	/* 3. SKALD_BUILD_SIG as the plugin compiled it */
	uint32_t build_sig;

	/* 4. identity */
	const char *name;        /* [a-z][a-z0-9_-]{0,63}, unique per broker */
	const char *version;     /* the plugin's own version, free text */
	const char *description; /* one line */
	uint64_t provides;       /* SKALD_PROVIDES_* bits */

	/* 5. config keys, ended by an entry with a NULL name; NULL: none */
	const struct skald_config_key *config_schema;

	/* 6. lifecycle (see the top of this file); each may be NULL */
	int (*init)(const struct skald_host *host,
		    const struct skald_config *config, void **state,
		    struct skald_error *err);
	int (*start)(void *state, struct skald_error *err);
	void (*stop)(void *state);
	void (*fini)(void *state);
};

/* The smallest descriptor a broker of ABI major 1 accepts (v1.0's). */
#define SKALD_PLUGIN_DESC_V1_SIZE \
	(offsetof(struct skald_plugin_desc, fini) + sizeof(void (*)(void *)))

/*
 * The first four fields, positionally:
 *	SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
 *		SKALD_PLUGIN_ABI,
 *		"example", "1.0.0", "An example plugin",
 *		SKALD_PROVIDES_GENERIC, example_schema,
 *		example_init, example_start, example_stop, example_fini,
 *	};
 */
#define SKALD_PLUGIN_ABI                                                \
	SKALD_ABI_MAJOR, SKALD_ABI_MINOR,                               \
		(uint32_t)sizeof(struct skald_plugin_desc), SKALD_BUILD_SIG

/* The name of the exported descriptor symbol. */
#define SKALD_PLUGIN_SYMBOL "skald_plugin_desc"

/*
 * The descriptor itself, declared here so that the compiler checks the
 * plugin's definition (and, in C++, gives it C linkage).
 */
extern SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc;

#ifdef __cplusplus
}
#endif

#endif
