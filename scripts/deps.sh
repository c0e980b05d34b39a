#!/usr/bin/env bash
# Installs what wasmfleet's tests and module builds need on Debian: idempotent, as root.
# Only packages that are missing are installed, so a second run costs a few seconds.
set -euo pipefail

apt_pkgs=(
  clang lld wasi-libc libclang-rt-dev-wasm32 wabt   # C and WAT modules
)

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
echo "deps: ok"
