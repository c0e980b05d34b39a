/*
 * c-to-f: a wasi-command module (a plain main, see modules/ABI.md). It reads a reading such
 * as {"celsius": 20} from stdin and writes {"fahrenheit":68} to stdout, which the agent
 * publishes to the manifest's output topic, converted/{device}. Anything else on stdin is
 * reported on stderr (the agent's log) with exit code 1, a handler failure.
 *
 * Build (from the repository root; or bash modules/build.sh):
 *   clang --target=wasm32-wasi -O2 -fno-unroll-loops -Wl,--strip-all \
 *     -o modules/examples/c-to-f/c-to-f.wasm modules/examples/c-to-f/c-to-f.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    static char in[4096];
    size_t n = fread(in, 1, sizeof in - 1, stdin);
    in[n] = 0;

    const char *p = strstr(in, "\"celsius\"");
    if (!p) {
        fputs("c-to-f: no \"celsius\" in the payload\n", stderr);
        return 1;
    }
    p += strlen("\"celsius\"");
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p++ != ':') {
        fputs("c-to-f: expected ':' after \"celsius\"\n", stderr);
        return 1;
    }
    char *end;
    double c = strtod(p, &end);
    if (end == p) {
        fputs("c-to-f: \"celsius\" is not a number\n", stderr);
        return 1;
    }
    printf("{\"fahrenheit\":%.10g}", c * 9 / 5 + 32);
    return 0;
}
