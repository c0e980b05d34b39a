// Package deb holds the Debian packaging of the device agent: the nfpm configuration
// (wasmfleet-agent.yaml), the maintainer scripts (scripts/), and build.sh, which `make
// packages` runs to build wasmfleet-agent_VERSION_{amd64,arm64,armhf}.deb into dist/ from
// the binaries of `make cross`. It has no Go code: packages_test.go builds the packages and
// checks their contents, then installs, reinstalls, removes and purges the amd64 one with
// dpkg into a temporary root. build.sh says why armhf carries the ARMv6 build.
package deb
