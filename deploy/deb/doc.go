// Package deb holds the Debian packaging of the device agent and of the fleet CLI and server:
// the nfpm configurations (wasmfleet-agent.yaml, wasmfleet.yaml), the maintainer scripts
// (scripts/agent.*, scripts/server.*), and build.sh, which `make packages` runs to build
// wasmfleet-agent_VERSION_ARCH.deb and wasmfleet_VERSION_ARCH.deb for amd64, arm64 and armhf
// into dist/ from the binaries of `make cross`. It has no Go code: packages_test.go builds
// the packages and checks their contents; install_test.go installs, reinstalls, removes and
// purges the amd64 ones with dpkg into a temporary root, each alone and both together, and
// checks what the fleet server's postinst makes of fleet.env. build.sh says why armhf
// carries the ARMv6 build.
package deb
