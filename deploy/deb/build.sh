#!/usr/bin/env bash
# Builds the .debs of the agent (wasmfleet-agent) and of the fleet CLI and server (wasmfleet)
# for amd64, arm64 and armhf with nfpm (make packages).
#
#   bash deploy/deb/build.sh [OUT]     # into OUT (default dist/), from the repository's root
#
# It packages the static binaries `make cross` leaves in $BIN (default bin/):
#   amd64 <- linux-amd64, arm64 <- linux-arm64, armhf <- linux-armv6 (GOARM=6).
# Both packages run as the system user wasmfleet and share /etc/wasmfleet; either may be
# installed alone, or both on one host (install_test.go does both).
# armhf is the ARMv6 build, not ARMv7: Raspberry Pi OS's armhf is built for ARMv6 with
# VFPv2 so that it runs on the Pi Zero and Pi 1, and its users install armhf packages on
# those too. A GOARM=6 binary runs on every ARMv7 and ARMv8 (32-bit) board as well, and the
# agent on 32-bit ARM runs wazero's interpreter, where GOARM=7 buys little.
#
# Environment: VERSION (default 0.0.0~gitYYYYMMDDHHMMSS.COMMIT, from the last commit),
# MAINTAINER (default a placeholder address), SOURCE_DATE_EPOCH (default the last commit's
# time, so the same tree gives the same packages). Needs nfpm v2.45.2 (make deps).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out=${1:-dist}
bin=${BIN:-bin}
die() { echo "deploy/deb/build.sh: $*" >&2; exit 1; }

nfpm=$(command -v nfpm || true)
if [ -z "$nfpm" ]; then
  gobin=$(go env GOBIN)
  nfpm=${gobin:-$(go env GOPATH)/bin}/nfpm
fi
[ -x "$nfpm" ] || die "nfpm not found: run make deps (go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2)"

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export VERSION=${VERSION:-0.0.0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S).$(git rev-parse --short=12 HEAD)}
export MAINTAINER=${MAINTAINER:-wasmfleet maintainers <maintainers@wasmfleet.invalid>}
case $VERSION in [0-9]*) ;; *) die "VERSION $VERSION: a Debian version starts with a digit" ;; esac

mkdir -p "$out"
for pair in amd64:linux-amd64 arm64:linux-arm64 armhf:linux-armv6; do
  arch=${pair%%:*}
  dir=$bin/${pair#*:}
  for pkg in wasmfleet-agent wasmfleet; do
    [ -x "$dir/$pkg" ] || die "$dir/$pkg not found: run make cross first"
    DEB_ARCH=$arch BIN=$dir "$nfpm" package --packager deb --config "deploy/deb/$pkg.yaml" \
      --target "$out/${pkg}_${VERSION}_${arch}.deb" >/dev/null
    echo "$out/${pkg}_${VERSION}_${arch}.deb"
  done
done
