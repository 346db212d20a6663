/* CRC-32C with the SSE4.2 crc32 instruction (used by walcodec.pyx).
 *
 * The instruction computes the same reflected Castagnoli update as walcodec's
 * slice-by-8 table (without the initial and final inversion, which the caller
 * does), about four times faster. kv_crc32c_hw_available() says whether this CPU
 * has it; the function is compiled for SSE4.2 alone, so the module still loads
 * and falls back to the table on a CPU without it (or on another architecture). */
#ifndef KVCORE_CRC32C_HW_H
#define KVCORE_CRC32C_HW_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>

__attribute__((target("sse4.2")))
static uint32_t kv_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc, w;
    while (n >= 8) {
        memcpy(&w, p, 8);  /* unaligned load */
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    return (uint32_t)c;
}

static int kv_crc32c_hw_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
}
#else
static uint32_t kv_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
    (void)p; (void)n;
    return crc;
}

static int kv_crc32c_hw_available(void) { return 0; }
#endif
#endif
