/*
 * The request fuzz harness: one in-process broker fed one input per
 * connection, shared by the libFuzzer target (tests/fuzz/fuzz_request.c)
 * and the regression test (tests/unit/test_requests.c).
 *
 * Each input gets a fresh connection: one end of a socketpair adopted with
 * sk_conn_new, the other end written by the harness, which reads and
 * discards every answer so the broker never blocks on output. Once the
 * broker is quiet the harness closes its end and runs the loop until the
 * broker has freed the connection too, so nothing carries over to the next
 * input but what the requests stored (topics, records).
 *
 * The broker runs with the defaults except for small backpressure limits
 * (queued.max.requests 4, connection.output.max.bytes 64 KiB), no initial
 * rebalance delay for consumer groups and a soft limit of 256 open
 * descriptors, so that the fuzzer reaches those paths with small inputs.
 * Every broker has topic "t" with 2 partitions.
 *
 * How sk_fuzz_run reads an input:
 *   - first byte 0xff: the rest is sent as raw bytes, framing and all;
 *   - first byte 0xfe: the rest is framed as below, then every plausible
 *     RecordBatch v2 in it gets a correct CRC (so mutated records reach
 *     the record parser instead of stopping at CORRUPT_MESSAGE);
 *   - otherwise the input is a sequence of frames: where the next 4 bytes
 *     are a size in [1, bytes left after them] that frame is sent as it is;
 *     else the rest of the input becomes one frame, its size prepended.
 * So the corpus (whole frames) passes unchanged, several frames pipeline
 * on one connection, and most mutations still reach a handler.
 */
#ifndef SK_FUZZ_HARNESS_H
#define SK_FUZZ_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* First input bytes that select raw mode and CRC fixing. */
#define SK_FUZZ_RAW	0xff
#define SK_FUZZ_FIX_CRC 0xfe

/* What happened on the connection of the last input. */
struct sk_fuzz_result {
	size_t sent;	       /* bytes the broker accepted from us */
	size_t replied;	       /* response bytes read back (discarded) */
	bool closed_by_broker; /* it closed first: a rejected request */
	bool released;	       /* the connection was freed after our close */
};

/*
 * Feed one fuzz input (see above), creating the broker on first use.
 * Returns 0, or -1 if the broker did not free the connection after the
 * peer closed it (the broker is then restarted so the next input starts
 * clean). A memory error or crash in the broker is not caught here: the
 * sanitizers or the fuzzer report it.
 */
int sk_fuzz_run(const uint8_t *data, size_t len);

/* Send bytes exactly as given, on a fresh connection; as sk_fuzz_run. */
int sk_fuzz_feed(const uint8_t *bytes, size_t len);

/*
 * How long to wait for pending answers (acks=all, offset commits and
 * other work done on threads, long-poll Fetch) before closing, and for
 * the broker to free the connection after the close. The fuzzer keeps
 * the default of a few ms; a test that wants every answer on a slow disk
 * sets more.
 */
void sk_fuzz_set_wait_ms(int ms);

/* The result of the last sk_fuzz_run or sk_fuzz_feed. */
const struct sk_fuzz_result *sk_fuzz_last(void);

/* Stop the broker and remove its data directory (idempotent). */
void sk_fuzz_teardown(void);

#endif
