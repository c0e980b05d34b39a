// Package config holds the configuration templates the packages install: agent.yaml, the
// commented /etc/wasmfleet/agent.yaml of the wasmfleet-agent .deb (deploy/deb), and
// fleet.env, the fleet server's /etc/wasmfleet/fleet.env (wasmfleet.service). It has no
// Go code; fleet_test.go checks fleet.env against the CLI and the unit, agent_test.go
// checks agent.yaml against the agent's configuration package (agent/config): it documents
// every setting, and it is valid once the required fields are filled.
package config
