/*
 * Lua topic hooks (LuaJIT): an operator attaches short scripts to a topic
 * in YAML; every batch produced to it runs through the topic's chain of
 * hooks on a hook worker thread before it is appended, and a retention
 * script may decide which closed segments go. docs/hooks.md is the
 * operator's and hook author's view; this header is the broker's.
 *
 * The parts:
 *  - hook_runtime.c: Lua states (one per worker slot x script version,
 *    created lazily on the worker), the sandbox, the CPU and memory
 *    bounds, and running one hook over one batch's records;
 *  - hook_chain.c: the broker's hooks (struct sk_hooks): scripts by path,
 *    per-topic chains built from the config (names and globs), on_error
 *    policies, the circuit breaker, metrics; hook_reload.c: loading
 *    and reloading them (SIGHUP, the admin call), compiling off the loop;
 *  - hook_produce.c: the produce path: per-partition queues so that order
 *    holds, jobs on the hook pool, decoding the batch, re-encoding it when
 *    something changed, dead letters and emitted copies, the compacted
 *    topics' key check (after the hooks), appends on the loop thread.
 * And hook_json.c, skald.json in C for the states.
 *
 * CPU bound. Debian's LuaJIT does not run count hooks inside JIT-compiled
 * traces, so `while true do end` would never be interrupted with the JIT
 * on (measured: it runs forever; probe in tests/unit/test_hook.c). Nor
 * does that LuaJIT (a 2022-03 snapshot) handle an allocation failing
 * inside a trace, which is how the memory bound below works (LuaJIT
 * fixed on-trace OOM errors from helper functions later). Hook states
 * therefore run with the JIT engine off (the interpreter honours a count
 * hook and raises a catchable error on a refused allocation). A call runs with no hook at all: a one-shot timer of the
 * calling thread signals it at the batch's deadline, and the handler
 * installs the count hook (lua_sethook is async-signal-safe), which
 * raises at the next instruction and re-arms itself on every instruction
 * so a pcall in the script cannot swallow the timeout. A thread that
 * cannot have such a timer falls back to a count hook every
 * SK_HOOK_CHECK_INSNS instructions comparing the monotonic clock with the
 * deadline (the per-instruction hook check cost ~5-8% of a hook).
 * bench/RESULTS-hooks.md has the interpreter vs JIT figures.
 *
 * Memory bound. Debian 12's amd64 LuaJIT is a GC64 build, where
 * lua_newstate with our own allocator works (probed in test_hook.c): each
 * state counts its bytes and refuses allocations past memory.mb, which
 * LuaJIT turns into a catchable "not enough memory" error. A state that
 * hit its bound is closed and recreated before its next use.
 *
 * Threading. Scripts, chains and the per-topic map are owned by the loop
 * thread (reference counts included); a reload compiles new versions on
 * the pool and swaps them in on the loop. A job holds a reference to its
 * chain, which holds its scripts, so a script version and its states
 * live until the last in-flight batch that started on it is done: reload
 * swaps chains at a batch boundary. A worker touches only the states of
 * its own slot, and only while running a job.
 */
#ifndef SK_HOOK_H
#define SK_HOOK_H

#include <stdatomic.h>

#include "batch.h"
#include "buf.h"
#include "config.h"
#include "hmap.h"
#include "list.h"
#include "metrics.h"
#include "pool.h"

struct sk_broker;
struct sk_topic;
struct sk_tpart;

/* Instructions between two deadline checks of a running hook. */
#define SK_HOOK_CHECK_INSNS 1000
/* Upper bound on hook workers (worker slots). */
#define SK_HOOK_MAX_WORKERS 64

/* Bounds of every hook state. */
struct sk_hook_limits {
	int64_t timeout_ms;  /* CPU budget of one hook on one batch */
	size_t memory_bytes; /* heap of one Lua state */
	bool jit;	     /* JIT on: the CPU bound does NOT hold (bench) */
};

/* ------------------------------------------------------------------ */
/* Runtime: scripts, states, one call (hook_runtime.c) */

/* One compiled version of a script file; immutable once made. */
struct sk_hook_script {
	char *path;   /* as configured; also the Lua chunk name */
	char *source; /* the text it was compiled from; owned */
	size_t len;
	uint64_t version; /* distinct per compile, for logs */
	unsigned has;	  /* SK_HOOK_HAS_* */
	struct sk_hook_limits lim;
	int refs; /* loop thread */
	int n_slots;
	/* per worker slot, created lazily by that worker; opaque */
	struct hk_state *states[SK_HOOK_MAX_WORKERS];
};

#define SK_HOOK_HAS_RECORD 0x1u
#define SK_HOOK_HAS_BATCH  0x2u
#define SK_HOOK_HAS_RETAIN 0x4u

/*
 * Compile src (text only, never bytecode) in a fresh sandboxed state and
 * run its top level, within lim: the script must return a table with
 * on_record, on_batch or retain. On failure err has the script's
 * file:line. The returned script has one reference.
 */
int sk_hook_script_new(struct sk_hook_script **out, const char *path,
		       const char *src, size_t len,
		       const struct sk_hook_limits *lim, int n_slots,
		       struct sk_err *err);
/* Same, reading the file at path (at most 4 MiB). */
int sk_hook_script_load(struct sk_hook_script **out, const char *path,
			const struct sk_hook_limits *lim, int n_slots,
			struct sk_err *err);
/* Read a script file into a new buffer; -errno with err set. */
int sk_hook_read_file(const char *path, char **src, size_t *len,
		      struct sk_err *err);
void sk_hook_script_ref(struct sk_hook_script *s);
/* Drop a reference; the last one closes every state (no job runs it). */
void sk_hook_script_unref(struct sk_hook_script *s);
/* Lua heap bytes of all the script's states (approximate, racy read). */
size_t sk_hook_script_memory(const struct sk_hook_script *s);

/* One record as a chain sees it; strings borrowed or in the arena. */
struct sk_hook_rec {
	int32_t offset_delta;
	int64_t timestamp;
	const uint8_t *key; /* NULL when key_len is -1 */
	int32_t key_len;
	const uint8_t *value; /* NULL when value_len is -1 */
	int32_t value_len;
	const uint8_t *hdrs; /* headers in wire form */
	size_t hdrs_len;
	int32_t n_hdrs;
	bool dropped;
	bool changed;
};

/* A record a script emitted to another topic (ctx.emit). */
struct sk_hook_emit {
	char *topic;
	struct sk_hook_rec rec; /* strings in the arena */
};

/* The records of one batch, and what the chain did to them. */
struct sk_hook_recs {
	struct sk_hook_rec *r;
	size_t n, cap;
	struct sk_hook_emit *emits;
	size_t n_emits, cap_emits;
	void **arena; /* blocks freed with the set */
	size_t n_arena, cap_arena;
	uint8_t *bump; /* free room of the newest shared block */
	size_t bump_left;
};

void sk_hook_recs_free(struct sk_hook_recs *rs);
/* Copy n bytes into the set's arena (freed with it). */
const uint8_t *sk_hook_recs_keep(struct sk_hook_recs *rs, const void *p,
				 size_t n);

/* What one hook call is about. */
struct sk_hook_call {
	const char *topic;
	int32_t partition;
	const char *hook;	  /* hook name, for logs */
	const char *options_json; /* ctx.options, as JSON */
};

enum sk_hook_status {
	SK_HOOK_OK = 0,
	SK_HOOK_ERROR,	 /* the script raised (or returned nonsense) */
	SK_HOOK_TIMEOUT, /* past timeout.ms */
	SK_HOOK_MEMORY,	 /* past memory.mb */
};

/* The outcome of one call. */
struct sk_hook_res {
	enum sk_hook_status status;
	char msg[512]; /* error with the script's file:line, or "" */
	int64_t ns;    /* time spent */
	size_t memory; /* the state's heap after the call */
	uint32_t in, out, dropped; /* records */
};

/*
 * Run s's on_batch (if it has one, else on_record) on the records of rs
 * not yet dropped, on worker slot slot (0 <= slot < s->n_slots; only one
 * thread uses a slot at a time). Effects are transactional: on any
 * failure rs is exactly as before.
 */
void sk_hook_run_records(struct sk_hook_script *s, int slot,
			 const struct sk_hook_call *call,
			 struct sk_hook_recs *rs, struct sk_hook_res *res);

/* A closed segment, as retain(segment, ctx) sees it. */
struct sk_hook_segment {
	int64_t base_offset;
	int64_t last_offset;
	int64_t first_timestamp;
	int64_t max_timestamp;
	int64_t size;
};

/* Run s's retain; *keep is true unless it returned false. */
void sk_hook_run_retain(struct sk_hook_script *s, int slot,
			const struct sk_hook_call *call,
			const struct sk_hook_segment *seg, bool *keep,
			struct sk_hook_res *res);

/*
 * host.json(null, array_mt) -> decode, encode, get, set (hook_json.c):
 * skald.json in C, with the rules and errors of the Lua codec in
 * skald.lua.
 */
struct lua_State;
int sk_hook_json_open(struct lua_State *L);
/*
 * For C functions that carry the codec's three upvalues (null, array
 * mark, scratch: copy them from the decode closure sk_hook_json_open
 * leaves in the registry under SK_HOOK_JSON_REG). decode_with pushes the
 * value of the JSON text p[0..n) (p must not move meanwhile; errors as
 * skald.json.decode); encode_with encodes the value at idx and hands the
 * text to sink, which must copy it (errors as skald.json.encode).
 */
#define SK_HOOK_JSON_REG "skald.json.decode"
void sk_hook_json_decode_with(struct lua_State *L, const char *p, size_t n);
void sk_hook_json_encode_with(struct lua_State *L, int idx,
			      void (*sink)(struct lua_State *L, void *arg,
					   const char *p, size_t n),
			      void *arg);
/*
 * skald.json.get and skald.json.set on the text p[0..n), for C functions
 * with the same upvalues. get_with pushes the values of the n_names
 * fields named at stack slots first...; set_with takes n_args (name,
 * value) arguments from slot first to the top of the stack and hands the
 * new text to sink (which must copy it). Errors as the Lua functions'.
 * tag (0: none) says that p and n identify the same text for as long as
 * it is used: a set_with after a get_with with the same tag, p and n
 * reuses its walk of the object.
 */
void sk_hook_json_get_with(struct lua_State *L, const char *p, size_t n,
			   int first, int n_names, uint64_t tag);
void sk_hook_json_set_with(struct lua_State *L, const char *p, size_t n,
			   int first, int n_args, uint64_t tag,
			   void (*sink)(struct lua_State *L, void *arg,
					const char *p, size_t n),
			   void *arg);

/* ------------------------------------------------------------------ */
/* Chains, policies, breaker, metrics, reload (hook_chain.c) */

/*
 * Per-hook counters, on the loop thread; published to the broker's
 * /metrics registry (skald_hook_*{topic,hook}) by sk_hook_chain_account.
 */
struct sk_hook_metrics {
	uint64_t calls;
	uint64_t records_in;
	uint64_t records_out;
	uint64_t records_dropped;
	uint64_t errors;
	uint64_t timeouts;
	uint64_t time_ns;
	uint64_t memory; /* Lua heap of the script's states, bytes */
	uint64_t breaker_trips;
	uint64_t skipped;      /* batches the open breaker answered */
	uint64_t acks0_closes; /* acks=0 connections closed for a rejection */
};

/* One hook of a topic's chain. */
struct sk_hook {
	char *name;
	struct sk_hook_script *script; /* referenced */
	int on_error;		       /* SK_HOOK_ON_ERROR_* */
	char *dead_letter_topic;       /* NULL unless dead-letter */
	char *options_json;
	char *where; /* FILE:LINE of the declaration */
	struct sk_hook_metrics m;
	struct sk_hook_metrics pub;   /* what /metrics has of m */
	struct sk_metric *series[12]; /* skald_hook_* series, on first use */
	int fails;		      /* consecutive failed batches */
	bool open;	    /* breaker open: not run, on_error applies */
	int64_t open_until; /* monotonic ms: next trial */
};

/* A topic's hooks, shared by its in-flight jobs (loop-thread refs). */
struct sk_hook_chain {
	int refs;
	char *topic;
	size_t n;
	struct sk_hook **hooks;
	struct sk_hook_script *retention; /* retain script, or NULL */
	char *retention_where;
	char *retention_options; /* JSON */
	bool retention_busy;	 /* a pass is on the pool */
};

void sk_hook_chain_ref(struct sk_hook_chain *c);
void sk_hook_chain_unref(struct sk_hook_chain *c);

struct hk_reload;

/* The broker's hooks; embedded in struct sk_broker. */
struct sk_hooks {
	struct sk_broker *b;
	struct sk_metrics *metrics;  /* b's registry (tests: their own) */
	struct sk_hook_settings set; /* the hooks: section in force */
	struct sk_hook_limits lim;
	struct sk_topic_decl *decls; /* topics: entries with hooks */
	size_t n_decls;
	struct sk_hmap scripts;		/* path -> struct hk_script_ent */
	struct sk_hmap topics;		/* topic name -> struct hk_topic_ent */
	struct sk_hmap parts;		/* "topic/partition" -> queue */
	size_t inflight;		/* produce jobs queued or running */
	struct sk_pool *pool;		/* hook workers; started lazily */
	atomic_int next_slot;		/* worker slot numbering */
	int64_t reloads;		/* successful reloads */
	struct sk_pool *retention_pool; /* retention scripts */
	bool retention_running;
	/* Reloads (hook_reload.c): one compiles at a time, off the loop. */
	struct hk_reload *reload;    /* on the pool, or NULL */
	struct sk_list reload_waits; /* for the next one */
	bool reload_again;	     /* asked for while one ran */
	bool closing;		     /* sk_hooks_fini under way */
	/* acks=0 produces refused after the hooks (connections closed) */
	uint64_t acks0_closes;
	uint64_t acks0_logged[64]; /* client.id hashes already logged */
	size_t n_acks0_logged;
};

/*
 * Compile every script the configuration names (errors name the YAML
 * FILE:LINE and the script's file:line); nothing starts on failure.
 */
int sk_hooks_init(struct sk_hooks *hs, struct sk_broker *b,
		  const struct sk_config *cfg, struct sk_err *err);
/* Finish in-flight jobs, stop the workers, release everything. */
void sk_hooks_fini(struct sk_hooks *hs);
/*
 * Reload, at once: take the hooks: section and the topics' hooks from
 * cfg and recompile scripts whose text changed, on this thread. A script
 * that fails to compile keeps its previous version (reported in err,
 * returns -EINVAL after applying the rest); a new script that fails
 * leaves its topics' chains as they were. In-flight batches finish on
 * the chain they started with. For tests; the broker uses the next one.
 */
int sk_hooks_reload(struct sk_hooks *hs, const struct sk_config *cfg,
		    struct sk_err *err);

/* Someone waiting for a reload's outcome; embed it in your own struct. */
struct sk_hook_reload_wait {
	struct sk_list link;
	/* Loop thread: rc 0 or -errno, msg the failure ("" on success). */
	void (*done)(struct sk_hook_reload_wait *w, int rc, const char *msg);
};

/*
 * Reload the YAML file the broker started with (b->config_path), or
 * with no file recompile the scripts in force, as sk_hooks_reload does,
 * without blocking the loop: the file is read and the changed scripts
 * compiled on the hook pool, and only the swap happens on the loop. why
 * starts the log line ("received SIGHUP"). Outcomes are logged, and
 * change nothing that worked. One reload runs at a time: asked for while
 * one runs, it follows it (requests meanwhile share it). w (or NULL) is
 * answered when it is done, possibly before this returns if the broker
 * is stopping. Loop thread.
 */
void sk_hooks_reload_start(struct sk_broker *b, const char *why,
			   struct sk_hook_reload_wait *w);
/* w no longer wants its answer (it is then never called). */
void sk_hooks_reload_cancel(struct sk_hook_reload_wait *w);
/* SIGHUP (an ev_signal whose data is the broker): the reload above. */
void sk_hooks_on_sighup(struct ev_loop *loop, ev_signal *w, int revents);
/* The chain of topic name (NULL: none). Borrowed; loop thread. */
struct sk_hook_chain *sk_hooks_chain(struct sk_hooks *hs, const char *topic);
/* The hook called name on topic, for tests and metrics; or NULL. */
struct sk_hook *sk_hooks_find(struct sk_hooks *hs, const char *topic,
			      const char *name);

/* Per-hook delta of one batch, folded into the metrics on the loop. */
struct sk_hook_delta {
	struct sk_hook_res res;
	bool ran;     /* the script was called */
	bool skipped; /* the breaker was open */
};

/* What a chain decided for one batch. */
enum sk_hook_out {
	SK_HOOK_OUT_ORIGINAL, /* write the bytes as they came */
	SK_HOOK_OUT_REBUILT,  /* write out.batch */
	SK_HOOK_OUT_NOTHING,  /* every record dropped: write nothing */
	SK_HOOK_OUT_REJECT,   /* answer kerr, write nothing */
};

/* Batches the broker appends to other topics for a chain. */
struct sk_hook_extra {
	char *topic;
	struct sk_buf batch;
};

struct sk_hook_batch_out {
	enum sk_hook_out what;
	struct sk_buf batch;	     /* SK_HOOK_OUT_REBUILT */
	int16_t kerr;		     /* SK_HOOK_OUT_REJECT */
	struct sk_hook_extra *extra; /* dead letters, emitted copies */
	size_t n_extra;
	struct sk_hook_delta *d; /* [chain->n] */
	char err[512];		 /* the failure that decided, if any */
};

/*
 * Run chain c over one batch on worker slot slot: check and decode its
 * records (decompressing; the header passed sk_batch_validate_header,
 * and records that fail the rest refuse the batch with their Kafka
 * error, as validation on the loop would), run each hook (skip[i]: the breaker is open,
 * apply its on_error without running it), apply on_error policies, and
 * re-encode once if anything changed (same codec, the producer's id,
 * epoch, base sequence and lastOffsetDelta kept; dropped records leave
 * offset gaps, as compaction does). Pure: any thread.
 */
void sk_hook_chain_process(const struct sk_hook_chain *c, int slot,
			   const bool *skip, const char *topic,
			   int32_t partition, const uint8_t *batch, size_t len,
			   int64_t max_message_bytes,
			   struct sk_hook_batch_out *out);
void sk_hook_batch_out_free(struct sk_hook_batch_out *out);

/*
 * Fold one batch's deltas into c's metrics and breakers, and publish
 * every hook's counters to hs->metrics (loop thread).
 */
void sk_hook_chain_account(struct sk_hooks *hs, struct sk_hook_chain *c,
			   const struct sk_hook_delta *d);
/* Fill skip[c->n] from the breakers, at submit time (loop thread). */
void sk_hook_chain_gate(struct sk_hook_chain *c, bool *skip);

/* The calling pool thread's worker slot, numbered on first use. */
int sk_hooks_slot(struct sk_hooks *hs);

/* Create the hook worker pool if not yet running. */
struct sk_pool *sk_hooks_pool(struct sk_hooks *hs);

/* ------------------------------------------------------------------ */
/* Produce path (hook_produce.c) */

struct hk_job;

/* A produce waiting for its batch to go through the hooks. */
struct sk_hook_wait {
	/* loop thread; the batch is appended (or not) when this runs */
	void (*done)(struct sk_hook_wait *w, int16_t kerr, int64_t base_offset,
		     int64_t append_time);
	void *arg;
	bool noreply;	    /* acks=0: a refusal closes the connection */
	struct hk_job *job; /* internal */
};

/*
 * Hand a batch of partition part of tp to its hooks, its header
 * validated (sk_batch_validate_header: the records are checked on the
 * hook worker, in the pass that decodes them). Returns
 * false when the topic has no hooks and nothing of the partition is
 * queued: the caller appends as usual. Otherwise the bytes are copied,
 * and w->done runs later on the loop thread, after the append, in
 * partition order.
 */
bool sk_hook_produce(struct sk_broker *b, struct sk_topic *tp,
		     struct sk_tpart *part, const uint8_t *batch, size_t len,
		     struct sk_hook_wait *w);
/* The waiting produce went away: its batch still goes through. */
void sk_hook_wait_cancel(struct sk_hook_wait *w);

/*
 * A produce with acks=0 was refused after its hooks (topic/partition,
 * Kafka error kerr): count it, and log it once per client.id (up to 64
 * of them) rather than once per batch. The caller closes the connection.
 */
void sk_hook_acks0_refused(struct sk_hooks *hs, const uint8_t *client,
			   size_t client_len, struct sk_str topic,
			   int32_t partition, int16_t kerr);

/*
 * Append one batch the broker built to topic name, partition
 * part_hint modulo its partitions (creating the topic with the broker's
 * defaults if it does not exist and auto-creation is on). Loop thread.
 */
int sk_hook_append_extra(struct sk_broker *b, const char *topic,
			 int32_t part_hint, struct sk_buf *batch,
			 struct sk_err *err);

/*
 * Append a batch for produce (defined in kafka_produce.c): LogAppendTime
 * stamping, the append, waking fetches. Returns a Kafka error code.
 */
int16_t sk_produce_append(struct sk_broker *b, struct sk_topic *tp,
			  struct sk_tpart *part, uint8_t *batch, size_t len,
			  int64_t *base_offset, int64_t *append_time);

/* ------------------------------------------------------------------ */
/* Retention scripts (hook_chain.c) */

/*
 * Ask t's retention script about its oldest closed segments, off the
 * loop; deletions are applied on the loop when the answer comes back.
 * Called by retention after the time/size rules.
 */
void sk_hooks_retention(struct sk_hooks *hs, struct sk_topic *t);

/* ------------------------------------------------------------------ */
/* hook-test (hook_cli.c) */

/* `skald hook-test SCRIPT [--options JSON] < records.jsonl` */
int sk_hook_cli_main(int argc, char **argv);

#endif
