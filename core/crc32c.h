/*
 * CRC-32C (Castagnoli), the checksum of Kafka record batches and of
 * Skald's own on-disk structures. Uses the SSE4.2 crc32 instruction when
 * the CPU has it (checked once at run time), a table otherwise.
 */
#ifndef SK_CRC32C_H
#define SK_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend crc (0 to start) over n bytes at p. */
uint32_t sk_crc32c(uint32_t crc, const void *p, size_t n);

/*
 * The portable table-driven path, same contract as sk_crc32c. Internal:
 * exposed so tests can check it against the hardware path.
 */
uint32_t sk_crc32c_sw(uint32_t crc, const void *p, size_t n);

#endif
