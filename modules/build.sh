#!/usr/bin/env bash
# Rebuilds every .wasm from its source: the example handlers in modules/examples/
# and the hostile test modules in agent/sandbox/testdata/hostile/.
#
#   bash modules/build.sh          # in place, beside the sources (make modules)
#   bash modules/build.sh OUT      # into OUT/<same relative path>, leaving the tree alone
#                                  # (modules/examples_test.go compares the two)
#
# Builds are reproducible: the same sources and tools give the same bytes (no debug info,
# no paths, no build ids). Tools: clang, wasm-ld, wasi-libc and wabt from Debian
# (make deps), and Go 1.26 for the Go examples.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${1:-${OUT:-$root}}
mkdir -p "$out"
out=$(cd "$out" && pwd)

die() { echo "modules/build.sh: $*" >&2; exit 1; }
need() { # need TOOL DEBIAN-PACKAGE
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: run make deps (Debian package $2)"
}
need clang clang
need wasm-ld lld
need wat2wasm wabt
need go "Go 1.26 from go.dev (not a Debian package)"
wasi_sysroot=/usr/lib/wasm32-wasi
[ -f "$wasi_sysroot/crt1-reactor.o" ] || die "$wasi_sysroot/crt1-reactor.o not found: run make deps (Debian package wasi-libc)"
[ -f /usr/include/wasm32-wasi/stdio.h ] || die "wasi-libc headers not found: run make deps (Debian package wasi-libc)"

# The same compiler flags for every C module: -O2, no debug info, names stripped.
cflags=(--target=wasm32-wasi -O2 -fno-unroll-loops -Wall -Wextra -Werror -I modules/sdk/c)

# dst PATH: where the output for repository-relative PATH goes (its directory is created).
dst() { mkdir -p "$out/$(dirname "$1")"; echo "$out/$1"; }

# wat SRC: wat2wasm SRC into the .wasm beside it.
wat() { wat2wasm "$1" -o "$(dst "${1%.wat}.wasm")"; }

# too_large: the too-large hostile module's data segment is a placeholder in the source;
# fill it with 1.1 MiB of "x" so the module is just over the 1 MiB limit the test sets.
too_large() {
  local src=agent/sandbox/testdata/hostile/too-large.wat tmp
  tmp=$(mktemp -d)
  local text pre post
  text=$(<"$src")
  pre=${text%%@@PAD@@*}
  post=${text#*@@PAD@@}
  { printf '%s' "$pre"; head -c 1153434 /dev/zero | tr '\0' x; printf '%s\n' "$post"; } >"$tmp/too-large.wat"
  wat2wasm "$tmp/too-large.wat" -o "$(dst "${src%.wat}.wasm")"
  rm -rf "$tmp"
}

echo "hostile modules (agent/sandbox/testdata/hostile)"
for f in agent/sandbox/testdata/hostile/*.wat; do
  case $f in
  */too-large.wat) too_large ;;
  *) wat "$f" ;;
  esac
done

echo "examples (modules/examples)"
ex=modules/examples

# echo: plain WAT.
wat $ex/echo/echo.wat

# threshold-alert: C reactor without libc (bump allocator), an 8 KiB stack so it fits one page.
clang "${cflags[@]}" -mexec-model=reactor -nostdlib \
  -Wl,--no-entry,--strip-all,--export=_initialize,-z,stack-size=8192 \
  -o "$(dst $ex/threshold-alert/threshold-alert.wasm)" \
  $ex/threshold-alert/threshold-alert.c "$wasi_sysroot/crt1-reactor.o"

# c-to-f: a wasi-command (plain main) with ordinary wasi-libc.
clang "${cflags[@]}" -Wl,--strip-all \
  -o "$(dst $ex/c-to-f/c-to-f.wasm)" $ex/c-to-f/c-to-f.c

# The Go examples, with Go alone (their .wasm is built, not committed).
bash modules/build-go.sh "$out"

echo "ok: built into $out"
