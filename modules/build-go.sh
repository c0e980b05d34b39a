#!/usr/bin/env bash
# Builds the Go example handlers (modules/examples/*/ with a main_wasip1.go) with Go alone.
# Their .wasm files are not committed (Go's runtime makes them megabytes): `make test`,
# `make demo` and modules/build.sh call this first.
#
#   bash modules/build-go.sh        # beside the sources
#   bash modules/build-go.sh OUT    # into OUT/<same relative path>
#
# -buildmode=c-shared exports _initialize; -trimpath and an empty build id keep the bytes
# independent of where the tree is checked out, so the build is reproducible.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${1:-$root}
for dir in modules/examples/*/; do
  [ -f "$dir/main_wasip1.go" ] || continue
  name=$(basename "$dir")
  mkdir -p "$out/$dir"
  GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 \
    go build -trimpath -buildvcs=false -buildmode=c-shared -ldflags='-s -w -buildid=' \
    -o "$out/$dir$name.wasm" "./$dir"
done
