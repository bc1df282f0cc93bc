// CRC-32C after Mark Adler's crc32c.c (zlib licence): three interleaved hardware streams
// combined with precomputed "append zeros" operators, plus a slicing-by-8 fallback.
#include "CCRC32C.h"

#include <string.h>

#define POLY 0x82f63b78u
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

static uint32_t table_sw[8][256];
static uint32_t zeros_long[4][256];
static uint32_t zeros_short[4][256];
static int have_sse42;

static uint32_t gf2_matrix_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1) sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_matrix_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = gf2_matrix_times(mat, mat[n]);
}

// Operator that appends `len` zero bytes to a raw (non-inverted) CRC.
static void zeros_op(uint32_t *even, size_t len) {
    uint32_t odd[32];
    uint32_t row = 1;
    odd[0] = POLY;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_matrix_square(even, odd);
    gf2_matrix_square(odd, even);
    do {
        gf2_matrix_square(even, odd);
        len >>= 1;
        if (len == 0) return;
        gf2_matrix_square(odd, even);
        len >>= 1;
    } while (len);
    for (int n = 0; n < 32; n++) even[n] = odd[n];
}

static void zeros_table(uint32_t zeros[4][256], size_t len) {
    uint32_t op[32];
    zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        zeros[0][n] = gf2_matrix_times(op, n);
        zeros[1][n] = gf2_matrix_times(op, n << 8);
        zeros[2][n] = gf2_matrix_times(op, n << 16);
        zeros[3][n] = gf2_matrix_times(op, n << 24);
    }
}

static inline uint32_t shift(uint32_t zeros[4][256], uint32_t crc) {
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^
           zeros[3][crc >> 24];
}

__attribute__((constructor)) static void crc32c_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ POLY : crc >> 1;
        table_sw[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = table_sw[0][n];
        for (int k = 1; k < 8; k++) {
            crc = table_sw[0][crc & 0xff] ^ (crc >> 8);
            table_sw[k][n] = crc;
        }
    }
    zeros_table(zeros_long, LONG_BLOCK);
    zeros_table(zeros_short, SHORT_BLOCK);
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

uint32_t logstore_crc32c_portable(uint32_t crci, const void *buf, size_t len) {
    const unsigned char *next = buf;
    uint64_t crc = crci ^ 0xffffffffu;
    while (len && ((uintptr_t)next & 7) != 0) {
        crc = table_sw[0][(crc ^ *next++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, next, 8);
        crc ^= word;  // little-endian only, like the rest of the format
        crc = table_sw[7][crc & 0xff] ^ table_sw[6][(crc >> 8) & 0xff] ^
              table_sw[5][(crc >> 16) & 0xff] ^ table_sw[4][(crc >> 24) & 0xff] ^
              table_sw[3][(crc >> 32) & 0xff] ^ table_sw[2][(crc >> 40) & 0xff] ^
              table_sw[1][(crc >> 48) & 0xff] ^ table_sw[0][crc >> 56];
        next += 8;
        len -= 8;
    }
    while (len) {
        crc = table_sw[0][(crc ^ *next++) & 0xff] ^ (crc >> 8);
        len--;
    }
    return (uint32_t)crc ^ 0xffffffffu;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len) {
    const unsigned char *next = buf;
    uint64_t crc0 = crc ^ 0xffffffffu, crc1, crc2;
    while (len && ((uintptr_t)next & 7) != 0) {
        crc0 = _mm_crc32_u8((uint32_t)crc0, *next++);
        len--;
    }
    // Three independent streams hide the instruction's 3-cycle latency; their CRCs are
    // merged by shifting the earlier ones over the later blocks' length.
    while (len >= LONG_BLOCK * 3) {
        crc1 = 0;
        crc2 = 0;
        const unsigned char *end = next + LONG_BLOCK;
        do {
            uint64_t a, b, c;
            memcpy(&a, next, 8);
            memcpy(&b, next + LONG_BLOCK, 8);
            memcpy(&c, next + 2 * LONG_BLOCK, 8);
            crc0 = _mm_crc32_u64(crc0, a);
            crc1 = _mm_crc32_u64(crc1, b);
            crc2 = _mm_crc32_u64(crc2, c);
            next += 8;
        } while (next < end);
        crc0 = shift(zeros_long, (uint32_t)crc0) ^ crc1;
        crc0 = shift(zeros_long, (uint32_t)crc0) ^ crc2;
        next += LONG_BLOCK * 2;
        len -= LONG_BLOCK * 3;
    }
    while (len >= SHORT_BLOCK * 3) {
        crc1 = 0;
        crc2 = 0;
        const unsigned char *end = next + SHORT_BLOCK;
        do {
            uint64_t a, b, c;
            memcpy(&a, next, 8);
            memcpy(&b, next + SHORT_BLOCK, 8);
            memcpy(&c, next + 2 * SHORT_BLOCK, 8);
            crc0 = _mm_crc32_u64(crc0, a);
            crc1 = _mm_crc32_u64(crc1, b);
            crc2 = _mm_crc32_u64(crc2, c);
            next += 8;
        } while (next < end);
        crc0 = shift(zeros_short, (uint32_t)crc0) ^ crc1;
        crc0 = shift(zeros_short, (uint32_t)crc0) ^ crc2;
        next += SHORT_BLOCK * 2;
        len -= SHORT_BLOCK * 3;
    }
    while (len >= 8) {
        uint64_t a;
        memcpy(&a, next, 8);
        crc0 = _mm_crc32_u64(crc0, a);
        next += 8;
        len -= 8;
    }
    while (len) {
        crc0 = _mm_crc32_u8((uint32_t)crc0, *next++);
        len--;
    }
    return (uint32_t)crc0 ^ 0xffffffffu;
}
#endif

uint32_t logstore_crc32c(uint32_t crc, const void *buf, size_t len) {
#if defined(__x86_64__)
    if (have_sse42) return crc32c_hw(crc, buf, len);
#endif
    return logstore_crc32c_portable(crc, buf, len);
}

int logstore_crc32c_is_hardware(void) { return have_sse42; }
