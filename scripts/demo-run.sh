#!/usr/bin/env bash
# `make demo-run`: builds bin/wasmfleet and runs each example handler in modules/examples
# through `wasmfleet run`, which is exactly the agent's sandbox, then shows hostile modules
# being stopped. Needs only Go: the C and WAT .wasm files are committed, the Go one is built.
# (`make demo` runs the whole fleet instead: scripts/demo.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wasmfleet-demo.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

ex=modules/examples
hostile=agent/sandbox/testdata/hostile

# quote prints its arguments as a shell would need them typed.
quote() {
  local out=() a
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=+@%-]+$ ]]; then
      out+=("$a")
    else
      out+=("'${a//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}

# header prints a section title and a line of explanation.
header() {
  printf '\n== %s\n' "$1"
  shift
  [ $# -gt 0 ] && printf '   %s\n' "$@"
  return 0
}

# wf shows and runs `wasmfleet ARGS...`, its stderr merged into stdout; a non-zero exit ends
# the demo.
wf() {
  printf '$ wasmfleet %s\n' "$(quote "$@")"
  bin/wasmfleet "$@" 2>&1
}

# contained shows and runs `wasmfleet ARGS...`, which must be stopped: exit code 2 and one
# `error: KIND:` line. Anything else ends the demo with an error.
contained() {
  local kind=$1 out rc
  shift
  printf '$ wasmfleet %s\n' "$(quote "$@")"
  if out=$(bin/wasmfleet "$@" 2>&1); then rc=0; else rc=$?; fi
  printf '%s\n(exit code %d)\n' "$out" "$rc"
  if [ "$rc" != 2 ] || [[ $out != "error: $kind: "* ]] || [ "$(wc -l <<<"$out")" != 1 ]; then
    echo "demo: expected exit code 2 and one line 'error: $kind: ...'" >&2
    exit 1
  fi
}

echo "== building bin/wasmfleet"
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -o bin/wasmfleet ./cmd/wasmfleet
bash modules/build-go.sh   # the Go example handlers (their .wasm is built, not committed)
echo "   $(go version)"

header "threshold-alert (C, handler/v1): alert when a reading is above config.threshold (30.5)" \
  "Below the threshold the handler publishes nothing:"
wf run --manifest $ex/threshold-alert/manifest.yaml --device pi-7 \
  --topic sensors/pi-7/temperature --event '{"value": 21.5}' $ex/threshold-alert/threshold-alert.wasm
echo "(no output)"
echo "   Above it, one alert on alerts/{device}/temperature, the only topic its manifest grants:"
wf run --manifest $ex/threshold-alert/manifest.yaml --device pi-7 \
  --topic sensors/pi-7/temperature --event '{"value": 31.2}' $ex/threshold-alert/threshold-alert.wasm

header "moving-average (Go, handler/v1, kv): the average of the last 5 readings, kept in kv" \
  "Three events sharing one --kv-dir, so the state carries over from run to run." \
  "(--interpreter: wazero's interpreter, what 32-bit ARM devices run. The compiler would" \
  " spend about 2 s compiling this 3 MB Go module on a first run; run and the agent then cache it.)"
for v in 20 22 27; do
  wf run --interpreter --manifest $ex/moving-average/manifest.yaml --kv-dir "$tmp/kv" --device pi-7 \
    --event "{\"value\": $v}" $ex/moving-average/moving-average.wasm
done

header "c-to-f (C, wasi-command): a plain main(), payload on stdin, stdout published" \
  "to the manifest's output topic converted/{device}; the event read from a file:"
echo '{"celsius": 21.5}' >"$tmp/reading.json"
wf run --manifest $ex/c-to-f/manifest.yaml --device pi-7 --event-file "$tmp/reading.json" $ex/c-to-f/c-to-f.wasm

header "echo (WAT, handler/v1): republishes the payload to echo/{device}" \
  "A JSON payload is printed as JSON, anything else as a string:"
wf run --manifest $ex/echo/manifest.yaml --device pi-7 --event '{"hello": "fleet"}' $ex/echo/echo.wasm
wf run --manifest $ex/echo/manifest.yaml --device pi-7 --event 'plain text' $ex/echo/echo.wasm

header "hostile modules are contained: exit code 2 and one 'error: <kind>: <detail>' line" \
  "An infinite loop, stopped at its manifest's 50ms timeout:"
contained timeout run --manifest $hostile/infinite-loop.yaml --event '{}' $hostile/infinite-loop.wasm
echo "   Loop-free exponential recursion, which wazero's own context check cannot stop:"
contained timeout run --manifest $hostile/exp-recursion.yaml --event '{}' $hostile/exp-recursion.wasm
echo "   A publish outside the module's publish capability:"
contained forbidden-topic run --manifest $hostile/forbidden-topic.yaml --event '{}' $hostile/forbidden-topic.wasm

printf '\ndemo: done. More: README.md, docs/sandbox.md, docs/signing.md, modules/ABI.md.\n'
