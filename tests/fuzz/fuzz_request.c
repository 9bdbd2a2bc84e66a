/*
 * libFuzzer target: Kafka request frames into an in-process broker.
 *
 *	make fuzz FUZZ_SECONDS=300
 *
 * Each input is fed on a fresh connection by tests/fuzz/harness.c, which
 * explains how the bytes are framed. Memory errors and undefined
 * behaviour are caught by ASan/UBSan. A connection the broker does not
 * free after the peer closed it is a bug too: the target aborts on it,
 * unless SKALD_FUZZ_LEAK_OK is set (to keep fuzzing other paths while
 * such a bug is open).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int leak_ok = -1;

	if (leak_ok < 0)
		leak_ok = getenv("SKALD_FUZZ_LEAK_OK") != NULL;
	if (sk_fuzz_run(data, size) < 0 && !leak_ok) {
		fprintf(stderr, "skald fuzz: the broker kept the connection "
				"after the peer closed it\n");
		abort();
	}
	return 0;
}
