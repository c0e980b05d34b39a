/*
 * wasmfleet.h — header-only C SDK for wasmfleet handler/v1 modules (see modules/ABI.md).
 *
 * Usage:
 *
 *     #include "wasmfleet.h"
 *
 *     static int handle(const uint8_t *payload, size_t len) {
 *         char dev[64];
 *         wasmfleet_log(WASMFLEET_INFO, "got an event");
 *         ...
 *         wasmfleet_publish_str("out/topic", "hello");
 *         return 0;                        // non-zero: handler failure, kv writes discarded
 *     }
 *     WASMFLEET_HANDLER(handle)
 *
 * WASMFLEET_HANDLER defines the two exports the host calls: wasmfleet_alloc (one call per
 * event, to place the payload) and wasmfleet_handle. By default wasmfleet_alloc is malloc.
 * Define WASMFLEET_BUMP_ALLOC before including this header to use a tiny bump allocator
 * instead (after __heap_base, growing memory as needed): this keeps malloc, and so most of
 * wasi-libc, out of the module. It is safe because every event runs in a pristine instance.
 * Do not mix it with malloc in the same module.
 *
 * Build as a WASI reactor (clang 14, Debian packages clang, lld, wasi-libc,
 * libclang-rt-dev-wasm32):
 *
 *     clang --target=wasm32-wasi -O2 -mexec-model=reactor -I modules/sdk/c \
 *           -Wl,--strip-all -o handler.wasm handler.c
 *
 * Every host function takes unsigned 32-bit pointers and lengths. Functions that fill a
 * buffer return the full length of the value (which may be larger than cap: call again with
 * a bigger buffer), or -1 when there is no value. Calls the manifest does not allow end the
 * event (ErrCapability, ErrForbiddenTopic, ...); they never return an error code.
 */
#ifndef WASMFLEET_H
#define WASMFLEET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WASMFLEET_IMPORT(name) __attribute__((import_module("wasmfleet"), import_name(name)))

/* Raw host imports, exactly as in ABI.md. */
WASMFLEET_IMPORT("event_topic") int32_t wasmfleet_event_topic(char *buf, uint32_t cap);
WASMFLEET_IMPORT("device_id") int32_t wasmfleet_device_id(char *buf, uint32_t cap);
WASMFLEET_IMPORT("config_get")
int32_t wasmfleet_config_get(const char *key, uint32_t key_len, char *buf, uint32_t cap);
WASMFLEET_IMPORT("publish")
int32_t wasmfleet_publish(const char *topic, uint32_t topic_len, const void *payload,
                          uint32_t payload_len);
WASMFLEET_IMPORT("log") void wasmfleet_log_raw(int32_t level, const char *msg, uint32_t msg_len);
WASMFLEET_IMPORT("kv_get")
int32_t wasmfleet_kv_get(const char *key, uint32_t key_len, void *buf, uint32_t cap);
WASMFLEET_IMPORT("kv_set")
int32_t wasmfleet_kv_set(const char *key, uint32_t key_len, const void *value, uint32_t value_len);
WASMFLEET_IMPORT("kv_delete") int32_t wasmfleet_kv_delete(const char *key, uint32_t key_len);
WASMFLEET_IMPORT("clock_now") int64_t wasmfleet_clock_now(void);
WASMFLEET_IMPORT("random_fill") int32_t wasmfleet_random_fill(void *buf, uint32_t len);

/* Log levels for wasmfleet_log. */
enum { WASMFLEET_DEBUG = 0, WASMFLEET_INFO = 1, WASMFLEET_WARN = 2, WASMFLEET_ERROR = 3 };

/* A strlen that does not need libc. */
static inline uint32_t wasmfleet_strlen(const char *s) {
    uint32_t n = 0;
    while (s[n]) n++;
    return n;
}

/* Publish a NUL-terminated payload to a NUL-terminated topic. Needs the publish capability. */
static inline void wasmfleet_publish_str(const char *topic, const char *payload) {
    wasmfleet_publish(topic, wasmfleet_strlen(topic), payload, wasmfleet_strlen(payload));
}

/* Log a NUL-terminated message (a silent no-op without the log capability). */
static inline void wasmfleet_log(int32_t level, const char *msg) {
    wasmfleet_log_raw(level, msg, wasmfleet_strlen(msg));
}

/*
 * String-keyed helpers. The _str getters copy at most cap-1 bytes and NUL-terminate buf; they
 * return the value's full length (so a result >= cap means it was cut), or -1 when absent.
 */
static inline int32_t wasmfleet__terminate(char *buf, uint32_t cap, int32_t n) {
    if (cap > 0) buf[(n >= 0 && (uint32_t)n < cap) ? (uint32_t)n : cap - 1] = 0;
    return n;
}
static inline int32_t wasmfleet_config_str(const char *key, char *buf, uint32_t cap) {
    int32_t n = wasmfleet_config_get(key, wasmfleet_strlen(key), buf, cap ? cap - 1 : 0);
    if (n < 0 && cap > 0) buf[0] = 0;
    return n < 0 ? n : wasmfleet__terminate(buf, cap, n);
}
static inline int32_t wasmfleet_device_str(char *buf, uint32_t cap) {
    return wasmfleet__terminate(buf, cap, wasmfleet_device_id(buf, cap ? cap - 1 : 0));
}
static inline int32_t wasmfleet_topic_str(char *buf, uint32_t cap) {
    return wasmfleet__terminate(buf, cap, wasmfleet_event_topic(buf, cap ? cap - 1 : 0));
}
/* kv with a NUL-terminated key; needs the kv capability. */
static inline int32_t wasmfleet_kv_get_str(const char *key, void *buf, uint32_t cap) {
    return wasmfleet_kv_get(key, wasmfleet_strlen(key), buf, cap);
}
static inline void wasmfleet_kv_set_str(const char *key, const void *value, uint32_t len) {
    wasmfleet_kv_set(key, wasmfleet_strlen(key), value, len);
}
static inline void wasmfleet_kv_delete_str(const char *key) {
    wasmfleet_kv_delete(key, wasmfleet_strlen(key));
}

#ifdef WASMFLEET_BUMP_ALLOC
extern unsigned char __heap_base;
/* A bump allocator from __heap_base, growing memory as needed. 0 when memory is full. */
static inline void *wasmfleet__bump(uint32_t size) {
    static uintptr_t next;
    if (!next) next = (uintptr_t)&__heap_base;
    uintptr_t p = (next + 15) & ~(uintptr_t)15;
    uint64_t end = (uint64_t)p + size;
    uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) * 65536;
    if (end > have) {
        uint64_t pages = (end - have + 65535) / 65536;
        if (pages > 65536 || __builtin_wasm_memory_grow(0, (uintptr_t)pages) == (size_t)-1) return 0;
    }
    next = (uintptr_t)end;
    return (void *)p;
}
#define WASMFLEET__ALLOC(size) wasmfleet__bump(size)
#else
#include <stdlib.h>
#define WASMFLEET__ALLOC(size) malloc((size) ? (size) : 1)
#endif

/*
 * WASMFLEET_HANDLER(fn) defines the exports wasmfleet_alloc and wasmfleet_handle, the latter
 * calling int fn(const uint8_t *payload, size_t len). Use it once, in one source file.
 */
#define WASMFLEET_HANDLER(fn)                                                                  \
    __attribute__((export_name("wasmfleet_alloc"))) void *wasmfleet_alloc(uint32_t size) {     \
        return WASMFLEET__ALLOC(size);                                                         \
    }                                                                                          \
    __attribute__((export_name("wasmfleet_handle"))) int32_t wasmfleet_handle(                  \
        const uint8_t *payload, uint32_t len) {                                                \
        return (int32_t)fn(payload, (size_t)len);                                              \
    }

#ifdef __cplusplus
}
#endif
#endif /* WASMFLEET_H */
