/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
 *
 * Every produced batch is checksummed once on the way in and every segment
 * is re-checked at open, so this is on the hot path. x86-64 CPUs since
 * Nehalem compute CRC-32C in hardware (SSE4.2 crc32, 8 bytes per
 * instruction); everything else uses slicing-by-8 tables.
 *
 * The CPU check and the tables are set up once, under pthread_once, the
 * first time either path runs; after that the only shared state is
 * read-only. The build does not pass -msse4.2, so the hardware function is
 * compiled with a target attribute and only called after the CPU check.
 */
#include "crc32c.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

/* -DSK_CRC32C_PORTABLE builds (and tests) the table path alone. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
	!defined(SK_CRC32C_PORTABLE)
#define SK_CRC32C_X86 1
#include <nmmintrin.h>
#endif

#define SK_CRC32C_POLY 0x82F63B78u

static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
/* crc32c_table[k][b]: CRC of byte b followed by k zero bytes. */
static uint32_t crc32c_table[8][256];
#ifdef SK_CRC32C_X86
/* Whether sk_crc32c may use the SSE4.2 instruction. */
static bool crc32c_have_hw;
#endif

/* Run once: build the slicing tables and probe the CPU. */
static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int j = 0; j < 8; j++)
			c = c & 1 ? c >> 1 ^ SK_CRC32C_POLY : c >> 1;
		crc32c_table[0][i] = c;
	}
	for (int k = 1; k < 8; k++) {
		for (int i = 0; i < 256; i++) {
			uint32_t c = crc32c_table[k - 1][i];

			crc32c_table[k][i] = c >> 8 ^ crc32c_table[0][c & 0xff];
		}
	}
#ifdef SK_CRC32C_X86
	__builtin_cpu_init();
	crc32c_have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

/*
 * Slicing-by-8: fold eight input bytes per step with eight table lookups.
 * The word is assembled byte by byte, which is endian-neutral and needs no
 * aligned or type-punned loads.
 */
uint32_t sk_crc32c_sw(uint32_t crc, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	const uint32_t(*t)[256] = (const uint32_t(*)[256])crc32c_table;

	if (n == 0)
		return crc;
	pthread_once(&crc32c_once, crc32c_init);
	crc = ~crc;
	for (; n >= 8; p += 8, n -= 8) {
		crc ^= (uint32_t)p[0] | (uint32_t)p[1] << 8 |
		       (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
		crc = t[7][crc & 0xff] ^ t[6][crc >> 8 & 0xff] ^
		      t[5][crc >> 16 & 0xff] ^ t[4][crc >> 24] ^ t[3][p[4]] ^
		      t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
	}
	for (; n > 0; p++, n--)
		crc = t[0][(crc ^ *p) & 0xff] ^ crc >> 8;
	return ~crc;
}

#ifdef SK_CRC32C_X86
/*
 * Byte steps up to an 8-byte boundary, then one crc32q per 8 bytes (loaded
 * with memcpy, which compiles to a plain mov), then the tail. A single
 * dependency chain runs at about 8 bytes per 3 cycles, far faster than
 * the disks and NICs this checksums for, so no multi-stream interleaving.
 */
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const uint8_t *p, size_t n)
{
	uint64_t c = ~crc;

	for (; n > 0 && ((uintptr_t)p & 7) != 0; p++, n--)
		c = _mm_crc32_u8((uint32_t)c, *p);
	for (; n >= 8; p += 8, n -= 8) {
		uint64_t w;

		memcpy(&w, p, sizeof(w));
		c = _mm_crc32_u64(c, w);
	}
	for (; n > 0; p++, n--)
		c = _mm_crc32_u8((uint32_t)c, *p);
	return ~(uint32_t)c;
}
#endif

uint32_t sk_crc32c(uint32_t crc, const void *p, size_t n)
{
	if (n == 0)
		return crc;
#ifdef SK_CRC32C_X86
	/* Once initialised, crc32c_have_hw is read-only. */
	pthread_once(&crc32c_once, crc32c_init);
	if (crc32c_have_hw)
		return crc32c_hw(crc, p, n);
#endif
	return sk_crc32c_sw(crc, p, n);
}
