#!/usr/bin/env bash
# Installs cosign for the cosign interop test (cmd/wasmfleet/internal/cli/verify_cosign_test.go). Slow (~8 minutes:
# cosign pulls in most of the sigstore and cloud SDK module graph), so it is not part of
# `make deps`; run `make deps-interop` once. Idempotent: an installed cosign of the pinned
# version is kept.
set -euo pipefail

COSIGN_VERSION=v3.1.3
bin="$(go env GOPATH)/bin"

if [ -x "$bin/cosign" ] && "$bin/cosign" version 2>/dev/null | grep -q "GitVersion: *${COSIGN_VERSION}"; then
  echo "deps-interop: cosign ${COSIGN_VERSION} already installed in $bin"
  exit 0
fi

echo "deps-interop: go install cosign ${COSIGN_VERSION} (slow)"
go install "github.com/sigstore/cosign/v3/cmd/cosign@${COSIGN_VERSION}"
"$bin/cosign" version >/dev/null
echo "deps-interop: ok ($bin/cosign; add $bin to PATH)"
