/*
 * threshold-alert: publish an alert when a temperature reading is above the configured
 * threshold.
 *
 * Payload: a JSON object with a number under "value" or "temperature", e.g. {"value": 31.2}.
 * Config:  threshold (a number, e.g. "30.5").
 * Output:  when value > threshold, {"device":"<id>","value":31.2,"threshold":30.5} to
 *          alerts/<device>/temperature; nothing otherwise. The numbers are copied as written.
 * Returns: 0 on success; 1 malformed JSON; 2 no numeric value/temperature; 3 bad threshold;
 *          4 device id or message too long.
 *
 * Build (from the repository root; or bash modules/build.sh):
 *   clang --target=wasm32-wasi -O2 -fno-unroll-loops -mexec-model=reactor -nostdlib \
 *     -I modules/sdk/c -Wl,--no-entry,--strip-all,--export=_initialize,-z,stack-size=8192 \
 *     -o modules/examples/threshold-alert/threshold-alert.wasm \
 *     modules/examples/threshold-alert/threshold-alert.c /usr/lib/wasm32-wasi/crt1-reactor.o
 *
 * No libc: a hand-written JSON scanner and number parser keep the module at about 4 KB.
 */
#define WASMFLEET_BUMP_ALLOC
#include "wasmfleet.h"

typedef struct {
    const uint8_t *p, *end;
    int depth;
} scanner;

__attribute__((noinline)) static void ws(scanner *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

/* scan_string skips a JSON string (s->p at the opening quote); 0 when malformed. */
static int scan_string(scanner *s, const uint8_t **start, const uint8_t **stop) {
    if (s->p >= s->end || *s->p != '"') return 0;
    *start = ++s->p;
    while (s->p < s->end) {
        uint8_t c = *s->p;
        if (c == '"') {
            *stop = s->p++;
            return 1;
        }
        if (c < 0x20) return 0;
        if (c == '\\') {
            if (++s->p >= s->end) return 0;
            c = *s->p;
            if (c == 'u') {
                for (int i = 0; i < 4; i++) {
                    if (++s->p >= s->end) return 0;
                    c = *s->p | 0x20;
                    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return 0;
                }
            } else if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' &&
                       c != 'r' && c != 't') {
                return 0;
            }
        }
        s->p++;
    }
    return 0;
}

static int digits(scanner *s) {
    const uint8_t *from = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    return s->p > from;
}

/* scan_number checks the JSON number grammar; 0 when malformed. */
static int scan_number(scanner *s) {
    if (s->p < s->end && *s->p == '-') s->p++;
    if (s->p < s->end && *s->p == '0') {
        s->p++;
    } else if (!digits(s)) {
        return 0;
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!digits(s)) return 0;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (!digits(s)) return 0;
    }
    return 1;
}

static int literal(scanner *s, const char *word) {
    for (; *word; word++, s->p++)
        if (s->p >= s->end || *s->p != (uint8_t)*word) return 0;
    return 1;
}

/* scan_value skips any JSON value; 0 when malformed. Nesting is capped at 32. */
static int scan_value(scanner *s) {
    const uint8_t *a, *b;
    ws(s);
    if (s->p >= s->end) return 0;
    switch (*s->p) {
    case '"':
        return scan_string(s, &a, &b);
    case 't':
        return literal(s, "true");
    case 'f':
        return literal(s, "false");
    case 'n':
        return literal(s, "null");
    case '{':
    case '[': {
        uint8_t close = *s->p == '{' ? '}' : ']';
        int object = close == '}';
        if (++s->depth > 32) return 0;
        s->p++;
        ws(s);
        if (s->p < s->end && *s->p == close) {
            s->p++;
            s->depth--;
            return 1;
        }
        for (;;) {
            if (object) {
                ws(s);
                if (!scan_string(s, &a, &b)) return 0;
                ws(s);
                if (s->p >= s->end || *s->p++ != ':') return 0;
            }
            if (!scan_value(s)) return 0;
            ws(s);
            if (s->p >= s->end) return 0;
            if (*s->p == close) {
                s->p++;
                s->depth--;
                return 1;
            }
            if (*s->p++ != ',') return 0;
        }
    }
    default:
        return scan_number(s);
    }
}

static int key_is(const uint8_t *a, const uint8_t *b, const char *k) {
    for (; a < b; a++, k++)
        if (!*k || *a != (uint8_t)*k) return 0;
    return *k == 0;
}

/* to_double converts a span already checked by scan_number. */
static double to_double(const uint8_t *p, const uint8_t *end) {
    double v = 0, scale = 1;
    int neg = 0, exp = 0, eneg = 0;
    if (p < end && *p == '-') neg = 1, p++;
    for (; p < end && *p >= '0' && *p <= '9'; p++) v = v * 10 + (*p - '0');
    if (p < end && *p == '.')
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) v = v * 10 + (*p - '0'), scale *= 10;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            if (exp < 400) exp = exp * 10 + (*p - '0');
    }
    v /= scale;
    for (; exp > 0; exp--) v = eneg ? v / 10 : v * 10;
    return neg ? -v : v;
}

/* A small output buffer. */
typedef struct {
    char buf[512];
    uint32_t n;
    int overflow;
} out;

__attribute__((noinline)) static void put(out *o, const void *src, uint32_t len) {
    if (o->n + len > sizeof o->buf) {
        o->overflow = 1;
        return;
    }
    for (uint32_t i = 0; i < len; i++) o->buf[o->n++] = ((const char *)src)[i];
}
__attribute__((noinline)) static void puts_(out *o, const char *s) { put(o, s, wasmfleet_strlen(s)); }

/* put_json_string writes s as the inside of a JSON string. */
__attribute__((noinline)) static void put_json_string(out *o, const char *s, uint32_t len) {
    static const char hex[] = "0123456789abcdef";
    for (uint32_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(o, e, 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(o, e, 6);
        } else {
            put(o, &c, 1);
        }
    }
}

static int handle(const uint8_t *payload, size_t len) {
    /* Find the reading while checking the whole payload is one valid JSON object. */
    scanner s = {payload, payload + len, 0};
    const uint8_t *num = 0, *num_end = 0, *k, *kend;
    ws(&s);
    if (s.p >= s.end || *s.p != '{') return 1;
    s.p++;
    ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
    } else {
        for (;;) {
            ws(&s);
            if (!scan_string(&s, &k, &kend)) return 1;
            ws(&s);
            if (s.p >= s.end || *s.p++ != ':') return 1;
            ws(&s);
            const uint8_t *v = s.p;
            if (!scan_value(&s)) return 1;
            if ((key_is(k, kend, "value") || key_is(k, kend, "temperature")) &&
                (*v == '-' || (*v >= '0' && *v <= '9')))
                num = v, num_end = s.p;
            ws(&s);
            if (s.p >= s.end) return 1;
            if (*s.p == '}') {
                s.p++;
                break;
            }
            if (*s.p++ != ',') return 1;
        }
    }
    ws(&s);
    if (s.p != s.end) return 1;
    if (!num) return 2;

    char th[64];
    int32_t thn = wasmfleet_config_str("threshold", th, sizeof th);
    if (thn <= 0 || thn >= (int32_t)sizeof th) return 3;
    scanner ts = {(const uint8_t *)th, (const uint8_t *)th + thn, 0};
    if (!scan_number(&ts) || ts.p != ts.end) return 3;

    if (!(to_double(num, num_end) > to_double(ts.p - thn, ts.end))) return 0;

    char dev[128];
    int32_t devn = wasmfleet_device_str(dev, sizeof dev);
    if (devn < 0 || devn >= (int32_t)sizeof dev) return 4;

    static out topic, msg; /* static: zeroed without memset; each event is a fresh instance */
    puts_(&topic, "alerts/");
    put(&topic, dev, (uint32_t)devn);
    puts_(&topic, "/temperature");
    puts_(&msg, "{\"device\":\"");
    put_json_string(&msg, dev, (uint32_t)devn);
    puts_(&msg, "\",\"value\":");
    put(&msg, num, (uint32_t)(num_end - num));
    puts_(&msg, ",\"threshold\":");
    put(&msg, th, (uint32_t)thn);
    puts_(&msg, "}");
    if (topic.overflow || msg.overflow) return 4;
    wasmfleet_publish(topic.buf, topic.n, msg.buf, msg.n);
    return 0;
}

WASMFLEET_HANDLER(handle)
