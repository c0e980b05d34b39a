/*
 * hash: the compute-heavy handler of agent/sandbox's benchmarks (BenchmarkHash4MiB). Each
 * event fills a 4 MiB buffer from the payload and hashes it, then publishes the digest in hex
 * to hash/out. A payload starting "fnv" selects FNV-1a 64, byte by byte: the tightest loop a
 * real handler has, the worst case for a check at every loop head. Anything else selects
 * SHA-256 (FIPS 180-4, loops not unrolled).
 *
 * Built by the benchmark itself, with the flags of modules/build.sh:
 *   clang --target=wasm32-wasi -O2 -fno-unroll-loops -mexec-model=reactor -nostdlib \
 *     -I modules/sdk/c -Wl,--no-entry,--strip-all,--export=_initialize,-z,stack-size=8192 \
 *     -o hash.wasm agent/sandbox/testdata/bench/hash.c /usr/lib/wasm32-wasi/crt1-reactor.o
 */
#define WASMFLEET_BUMP_ALLOC
#include "wasmfleet.h"

#define SIZE (4u << 20)
static uint8_t buf[SIZE];

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64], a, b, c, d, e, f, g, k;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

/* sha256 of buf (SIZE is a multiple of 64: one more block of padding). */
static void sha256(uint8_t out[32]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    for (uint32_t off = 0; off < SIZE; off += 64) block(h, buf + off);
    uint8_t pad[64] = {0x80};
    uint64_t bits = (uint64_t)SIZE * 8;
    for (int i = 0; i < 8; i++) pad[63 - i] = (uint8_t)(bits >> (8 * i));
    block(h, pad);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

static uint64_t fnv1a(void) {
    uint64_t x = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < SIZE; i++) x = (x ^ buf[i]) * 0x100000001b3ull;
    return x;
}

static int handle(const uint8_t *payload, size_t len) {
    if (len == 0) return 1;
    for (uint32_t i = 0; i < SIZE; i++) buf[i] = payload[i % len] ^ (uint8_t)(i >> 12);
    static const char hex[] = "0123456789abcdef";
    char digest[64];
    uint32_t n;
    if (len >= 3 && payload[0] == 'f' && payload[1] == 'n' && payload[2] == 'v') {
        uint64_t x = fnv1a();
        for (int i = 0; i < 16; i++) digest[i] = hex[(x >> (60 - 4 * i)) & 15];
        n = 16;
    } else {
        uint8_t d[32];
        sha256(d);
        for (int i = 0; i < 32; i++) digest[2 * i] = hex[d[i] >> 4], digest[2 * i + 1] = hex[d[i] & 15];
        n = 64;
    }
    wasmfleet_publish("hash/out", 8, digest, n);
    return 0;
}

WASMFLEET_HANDLER(handle)
