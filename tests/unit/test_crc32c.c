/*
 * CRC-32C: published check values, chaining, and the hardware path
 * against the table path and a bit-at-a-time reference over many lengths
 * and alignments.
 */
#include "crc32c.h"
#include "tap.h"

#include <stdbool.h>
#include <stdlib.h>

/* The definition of CRC-32C, one bit at a time: slow but obviously right. */
static uint32_t crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? crc >> 1 ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

/* xorshift64: reproducible test data without libc rand's quirks. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* RFC 3720 (iSCSI) B.4 vectors over 32-byte buffers. */
static void test_rfc3720(void)
{
	uint8_t b[32];

	memset(b, 0, sizeof(b));
	is(sk_crc32c(0, b, 32), 0x8A9136AA, "32 zero bytes");
	is(sk_crc32c_sw(0, b, 32), 0x8A9136AA, "32 zero bytes (sw)");
	memset(b, 0xff, sizeof(b));
	is(sk_crc32c(0, b, 32), 0x62A8AB43, "32 0xff bytes");
	for (int i = 0; i < 32; i++)
		b[i] = (uint8_t)i;
	is(sk_crc32c(0, b, 32), 0x46DD794E, "32 ascending bytes");
	for (int i = 0; i < 32; i++)
		b[i] = (uint8_t)(31 - i);
	is(sk_crc32c(0, b, 32), 0x113FDB5C, "32 descending bytes");
	is(sk_crc32c_sw(0, b, 32), 0x113FDB5C, "32 descending bytes (sw)");
}

/*
 * Every length 0..300 at every alignment 0..15, plus a few large sizes:
 * hardware, table and bitwise paths must agree, and splitting the input
 * anywhere and chaining must give the same result.
 */
static void test_random(void)
{
	enum { MAX = 70000 };
	static const size_t big[] = { 1023, 1024,  4095,    4096,
				      4097, 65536, MAX - 16 };
	uint8_t *buf = malloc(MAX);
	uint64_t s = 0x9E3779B97F4A7C15u;
	bool hw_ok = true, sw_ok = true, chain_ok = true, big_ok = true;
	int cases = 0;

	for (size_t i = 0; i < MAX; i++)
		buf[i] = (uint8_t)rnd(&s);
	for (size_t len = 0; len <= 300; len++) {
		for (size_t al = 0; al < 16; al++) {
			const uint8_t *p = buf + al;
			uint32_t ref = crc32c_bitwise(0, p, len);
			size_t cut = len ? (size_t)(rnd(&s) % (len + 1)) : 0;
			uint32_t seed = (uint32_t)rnd(&s);

			hw_ok &= sk_crc32c(0, p, len) == ref;
			sw_ok &= sk_crc32c_sw(0, p, len) == ref;
			chain_ok &= sk_crc32c(sk_crc32c(0, p, cut), p + cut,
					      len - cut) == ref;
			chain_ok &= sk_crc32c_sw(sk_crc32c_sw(0, p, cut),
						 p + cut, len - cut) == ref;
			hw_ok &= sk_crc32c(seed, p, len) ==
				 crc32c_bitwise(seed, p, len);
			sw_ok &= sk_crc32c_sw(seed, p, len) ==
				 crc32c_bitwise(seed, p, len);
			cases++;
		}
	}
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		for (size_t al = 0; al < 8; al++) {
			uint32_t ref = crc32c_bitwise(0, buf + al, big[i]);

			big_ok &= sk_crc32c(0, buf + al, big[i]) == ref;
			big_ok &= sk_crc32c_sw(0, buf + al, big[i]) == ref;
		}
	}
	diag("%d length/alignment cases", cases);
	ok(hw_ok, "sk_crc32c matches the bitwise reference");
	ok(sw_ok, "sk_crc32c_sw matches the bitwise reference");
	ok(chain_ok, "chaining over any split gives the same crc");
	ok(big_ok, "large buffers agree on both paths");
	free(buf);
}

int main(void)
{
	const char *check = "123456789";

	plan(14);
#if defined(__x86_64__)
	__builtin_cpu_init();
	diag("sse4.2 %s",
	     __builtin_cpu_supports("sse4.2") ? "available" : "not available");
#endif
	is(sk_crc32c(0, check, 9), 0xE3069283, "check value of 123456789");
	is(sk_crc32c_sw(0, check, 9), 0xE3069283, "check value (sw)");
	is(sk_crc32c(0, "", 0), 0, "empty input is 0");
	is(sk_crc32c(0xE3069283, NULL, 0), 0xE3069283,
	   "empty input leaves the running crc alone");
	test_rfc3720();
	test_random();
	return check_status();
}
