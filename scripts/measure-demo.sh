#!/usr/bin/env bash
# Measures what docs/BENCHMARKS.md ("wasmfleet dev: from git clone to the dashboard") quotes:
# clones this repository (its committed HEAD) into a new temporary directory, runs make demo
# there (or $DEMO_CMD), and prints how long after the start of git clone the dashboard
# answered, and the example handlers were rolled out. It then stops wasmfleet dev (SIGINT).
#
#   bash scripts/measure-demo.sh                                   # caches as they are
#   GOCACHE=$(mktemp -d) bash scripts/measure-demo.sh              # empty build cache
#   GOCACHE=$(mktemp -d) GOMODCACHE=$(mktemp -d) bash scripts/measure-demo.sh
#   DEMO_CMD='go run ./cmd/wasmfleet dev --for 240s' bash scripts/measure-demo.sh
#
# Needs curl. An empty GOMODCACHE is left behind read-only: go clean -modcache removes it.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cmd=${DEMO_CMD:-"make demo DEMO_ARGS='--for 240s'"}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/measure-demo.XXXXXX")
t0=$(date +%s.%N)
git clone -q "$repo" "$tmp/clone"
cd "$tmp/clone"
bash -c "$cmd" >"$tmp/out" 2>"$tmp/err" &
pid=$!
url="" dash="" settled=""
while kill -0 "$pid" 2>/dev/null; do
  [ -n "$url" ] || url=$(grep -o 'dashboard  http://[^ ]*' "$tmp/out" | awk '{print $2}')
  if [ -n "$url" ] && [ -z "$dash" ] && curl -sf -o /dev/null "$url"; then dash=$(date +%s.%N); fi
  if [ -z "$settled" ] && grep -q "every example handler runs" "$tmp/out"; then
    settled=$(date +%s.%N)
    pkill -INT -f "dev --for 240s"
  fi
  sleep 0.2
done
wait "$pid"
rc=$?
since() { [ -n "$1" ] && awk -v a="$1" -v b="$t0" 'BEGIN { printf "%.1f s", a - b }' || echo "never"; }
echo "dashboard answering: $(since "$dash") after git clone started"
echo "examples rolled out: $(since "$settled")"
echo "exit $rc; load average $(cut -d' ' -f1-3 /proc/loadavg); output in $tmp"
