/*
 * A native stand-in for modules/sdk/c/wasmfleet.h, so that a handler's C source builds as an
 * ordinary program (the peer "fork/exec of a native build" in agent/sandbox's benchmarks).
 * Built with -include this file and -I a directory whose wasmfleet.h is this file, so the
 * handler's #include "wasmfleet.h" finds it instead of the wasm SDK.
 *
 * The host functions are plain C: the payload comes from stdin, the device id from
 * $WASMFLEET_DEVICE_ID, config values from $WASMFLEET_CONFIG_<key>, the topic from
 * $WASMFLEET_TOPIC; each publish is written to stdout as "<topic> <payload>\n". The
 * handler's return value is the exit code.
 */
#ifndef WASMFLEET_H
#define WASMFLEET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { WASMFLEET_DEBUG = 0, WASMFLEET_INFO = 1, WASMFLEET_WARN = 2, WASMFLEET_ERROR = 3 };

static inline uint32_t wasmfleet_strlen(const char *s) { return (uint32_t)strlen(s); }

static inline int32_t wasmfleet__copy(const char *v, char *buf, uint32_t cap) {
    if (!v) return -1;
    uint32_t n = (uint32_t)strlen(v);
    memcpy(buf, v, n < cap ? n : cap);
    return (int32_t)n;
}
static inline int32_t wasmfleet__terminate(char *buf, uint32_t cap, int32_t n) {
    if (cap > 0) buf[(n >= 0 && (uint32_t)n < cap) ? (uint32_t)n : cap - 1] = 0;
    return n;
}
static inline int32_t wasmfleet_config_get(const char *key, uint32_t key_len, char *buf, uint32_t cap) {
    char name[300];
    if (key_len > 256) return -1;
    memcpy(name, "WASMFLEET_CONFIG_", 17);
    memcpy(name + 17, key, key_len);
    name[17 + key_len] = 0;
    return wasmfleet__copy(getenv(name), buf, cap);
}
static inline int32_t wasmfleet_config_str(const char *key, char *buf, uint32_t cap) {
    int32_t n = wasmfleet_config_get(key, wasmfleet_strlen(key), buf, cap ? cap - 1 : 0);
    if (n < 0 && cap > 0) buf[0] = 0;
    return n < 0 ? n : wasmfleet__terminate(buf, cap, n);
}
static inline int32_t wasmfleet_device_str(char *buf, uint32_t cap) {
    return wasmfleet__terminate(buf, cap, wasmfleet__copy(getenv("WASMFLEET_DEVICE_ID"), buf, cap ? cap - 1 : 0));
}
static inline int32_t wasmfleet_topic_str(char *buf, uint32_t cap) {
    return wasmfleet__terminate(buf, cap, wasmfleet__copy(getenv("WASMFLEET_TOPIC"), buf, cap ? cap - 1 : 0));
}
static inline int32_t wasmfleet_publish(const char *topic, uint32_t topic_len, const void *payload, uint32_t payload_len) {
    fwrite(topic, 1, topic_len, stdout);
    fputc(' ', stdout);
    fwrite(payload, 1, payload_len, stdout);
    fputc('\n', stdout);
    return 0;
}
static inline void wasmfleet_publish_str(const char *topic, const char *payload) {
    wasmfleet_publish(topic, wasmfleet_strlen(topic), payload, wasmfleet_strlen(payload));
}
static inline void wasmfleet_log(int32_t level, const char *msg) { (void)level; fprintf(stderr, "%s\n", msg); }

#define WASMFLEET_HANDLER(fn)                                                                  \
    int main(void) {                                                                           \
        static uint8_t payload[1 << 16];                                                       \
        size_t n = 0;                                                                          \
        ssize_t r;                                                                             \
        while (n < sizeof payload && (r = read(0, payload + n, sizeof payload - n)) > 0)        \
            n += (size_t)r;                                                                    \
        int code = fn(payload, n);                                                             \
        fflush(stdout);                                                                        \
        return code;                                                                           \
    }

#endif
