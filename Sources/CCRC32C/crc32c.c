// CRC-32C after Mark Adler's crc32c.c (zlib licence): three interleaved hardware streams
// combined with precomputed "append zeros" operators, plus a slicing-by-8 fallback.
#include "CCRC32C.h"

#include <string.h>

#define POLY 0x82f63b78u
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256
// Records are short (a 128-byte payload is a 156-byte CRC), too short for SHORT_BLOCK's
// 768 bytes, and one stream over them is a chain of dependent 3-cycle instructions.
#define TINY_BLOCK 48

static uint32_t table_sw[8][256];
// Operators appending one and two blocks of zeros, for merging three interleaved streams.
static uint32_t zeros_long[4][256], zeros_long2[4][256];
static uint32_t zeros_short[4][256], zeros_short2[4][256];
static uint32_t zeros_tiny[4][256], zeros_tiny2[4][256];
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

// The same for any `len`, not only a power of two: the product of the operators for its bits
// (they commute, all being multiplication by a power of x modulo the polynomial).
static void zeros_op_any(uint32_t *op, size_t len) {
    uint32_t part[32], product[32];
    int first = 1;
    for (size_t bit = 1; bit != 0 && bit <= len; bit <<= 1) {
        if (!(len & bit)) continue;
        zeros_op(part, bit);
        if (first) {
            memcpy(op, part, sizeof part);
            first = 0;
        } else {
            for (int n = 0; n < 32; n++) product[n] = gf2_matrix_times(part, op[n]);
            memcpy(op, product, sizeof product);
        }
    }
    if (first) {
        for (int n = 0; n < 32; n++) op[n] = 1u << n;  // no zeros: the identity
    }
}

static void zeros_table(uint32_t zeros[4][256], size_t len) {
    uint32_t op[32];
    zeros_op_any(op, len);
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
    zeros_table(zeros_long2, 2 * LONG_BLOCK);
    zeros_table(zeros_short, SHORT_BLOCK);
    zeros_table(zeros_short2, 2 * SHORT_BLOCK);
    zeros_table(zeros_tiny, TINY_BLOCK);
    zeros_table(zeros_tiny2, 2 * TINY_BLOCK);
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

// The CRC of 3 * `block` bytes after `crc0`: three independent streams hide the instruction's
// 3-cycle latency, and their CRCs are merged by shifting the earlier two over the blocks after
// them, both shifts side by side (at the tiny block size the merge is a good part of the cost).
__attribute__((target("sse4.2"), always_inline)) static inline uint64_t three_streams(
    uint64_t crc0, const unsigned char *next, size_t block, uint32_t once[4][256], uint32_t twice[4][256]) {
    uint64_t crc1 = 0, crc2 = 0;
    const unsigned char *end = next + block;
    do {
        uint64_t a, b, c;
        memcpy(&a, next, 8);
        memcpy(&b, next + block, 8);
        memcpy(&c, next + 2 * block, 8);
        crc0 = _mm_crc32_u64(crc0, a);
        crc1 = _mm_crc32_u64(crc1, b);
        crc2 = _mm_crc32_u64(crc2, c);
        next += 8;
    } while (next < end);
    return shift(twice, (uint32_t)crc0) ^ shift(once, (uint32_t)crc1) ^ crc2;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len) {
    const unsigned char *next = buf;
    uint64_t crc0 = crc ^ 0xffffffffu;
    // Up to 8-byte alignment in at most three instructions: a record's CRC starts 4 bytes in.
    if (((uintptr_t)next & 1) && len >= 1) {
        crc0 = _mm_crc32_u8((uint32_t)crc0, *next);
        next += 1;
        len -= 1;
    }
    if (((uintptr_t)next & 2) && len >= 2) {
        uint16_t h;
        memcpy(&h, next, 2);
        crc0 = _mm_crc32_u16((uint32_t)crc0, h);
        next += 2;
        len -= 2;
    }
    if (((uintptr_t)next & 4) && len >= 4) {
        uint32_t w;
        memcpy(&w, next, 4);
        crc0 = _mm_crc32_u32((uint32_t)crc0, w);
        next += 4;
        len -= 4;
    }
    while (len >= LONG_BLOCK * 3) {
        crc0 = three_streams(crc0, next, LONG_BLOCK, zeros_long, zeros_long2);
        next += LONG_BLOCK * 3;
        len -= LONG_BLOCK * 3;
    }
    while (len >= SHORT_BLOCK * 3) {
        crc0 = three_streams(crc0, next, SHORT_BLOCK, zeros_short, zeros_short2);
        next += SHORT_BLOCK * 3;
        len -= SHORT_BLOCK * 3;
    }
    while (len >= TINY_BLOCK * 3) {
        crc0 = three_streams(crc0, next, TINY_BLOCK, zeros_tiny, zeros_tiny2);
        next += TINY_BLOCK * 3;
        len -= TINY_BLOCK * 3;
    }
    while (len >= 8) {
        uint64_t a;
        memcpy(&a, next, 8);
        crc0 = _mm_crc32_u64(crc0, a);
        next += 8;
        len -= 8;
    }
    if (len >= 4) {
        uint32_t w;
        memcpy(&w, next, 4);
        crc0 = _mm_crc32_u32((uint32_t)crc0, w);
        next += 4;
        len -= 4;
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
