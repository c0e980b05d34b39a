#!/usr/bin/env bash
# Installs what wasmfleet's tests and module builds need on Debian: idempotent, as root.
# Only what is missing is installed, so a second run costs a few seconds.
set -euo pipefail

apt_pkgs=(
  clang lld wasi-libc libclang-rt-dev-wasm32 wabt   # C and WAT modules
  mosquitto                                         # MQTT broker for integration tests (internal/testenv)
  mosquitto-clients                                 # mosquitto_sub, a real client of wasmfleet dev's broker in cmd/wasmfleet/internal/devenv's test
  qemu-user-static                                  # runs the arm64 and armv6 agents in agent/arm_test.go
  systemd                                           # systemd-analyze and the host's units for deploy/systemd's tests
  nodejs                                            # Node.js, a peer of agent/sandbox's benchmarks (make bench)
  chromium                                          # headless browser for fleet/dashboard's tests (chromedp)
)

VERSITYGW_VERSION=v1.8.0   # S3 server for integration tests (internal/testenv)
NFPM_VERSION=v2.45.2       # builds the .deb packages (make packages, deploy/deb)

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# versitygw is a Go program: `go install` builds it into $(go env GOPATH)/bin (or $GOBIN),
# where internal/testenv looks for it. No root needed.
gobin="$(go env GOBIN)"
gobin="${gobin:-$(go env GOPATH)/bin}"
# The binary's --version says "git" when built this way; `go version -m` names the module version.
if ! go version -m "$gobin/versitygw" 2>/dev/null | grep -Eq "^\s+mod\s+github.com/versity/versitygw\s+${VERSITYGW_VERSION}\s"; then
  echo "deps: go install versitygw ${VERSITYGW_VERSION} (a Go build: about 3 minutes the first time)"
  go install "github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}"
fi
# nfpm, the same way: a tool, not a module dependency of ours.
if ! go version -m "$gobin/nfpm" 2>/dev/null | grep -Eq "^\s+mod\s+github.com/goreleaser/nfpm/v2\s+${NFPM_VERSION}\s"; then
  echo "deps: go install nfpm ${NFPM_VERSION}"
  go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@${NFPM_VERSION}"
fi
echo "deps: ok"
