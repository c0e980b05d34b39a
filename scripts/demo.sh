#!/usr/bin/env bash
# The wasmfleet demo (`make demo`): builds bin/wasmfleet and the Go example handler, then runs
# `wasmfleet dev` in .wasmfleet-dev: an MQTT broker, an S3 store, the rollout controller, the
# dashboard and three agents in one process, which publishes the example handlers, rolls them
# out in waves and drives sample sensor events. It prints the dashboard's URL and how to reach
# the broker and the store. Ctrl-C stops it; running it again carries on in .wasmfleet-dev.
#
# Needs only Go (the C and WAT .wasm files are committed; the Go one is built here).
# Arguments go to wasmfleet dev, for CI: `make demo DEMO_ARGS='--for 90s'` stops after 90 s
# and fails unless every example handler was rolled out by then.
set -euo pipefail
cd "$(dirname "$0")/.."

# -tags nokms leaves the cloud KMS providers out (signing/kms): they are two thirds of what
# the CLI compiles, and the dev environment signs with key files. `make build` builds the
# whole CLI.
echo "demo: building bin/wasmfleet (without the cloud KMS providers; make build has them) and the Go example handler ($(go version | cut -d' ' -f3))" >&2
mkdir -p bin
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
CGO_ENABLED=0 go build -trimpath -tags nokms -ldflags "-X github.com/wasmfleet/wasmfleet/agent.Version=$version" -o bin/wasmfleet ./cmd/wasmfleet
bash modules/build-go.sh
exec bin/wasmfleet dev "$@"
