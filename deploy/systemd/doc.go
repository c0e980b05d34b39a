// Package systemd holds the hardened systemd units for the agent (wasmfleet-agent.service)
// and the fleet server (wasmfleet.service). It has no Go code: units_test.go checks the
// units with systemd-analyze (verify, and the security exposure score) and pins the
// settings the design asks for. docs/agent.md ("Running under systemd") explains them.
package systemd
