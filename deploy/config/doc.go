// Package config holds the configuration templates the packages install: agent.yaml, the
// commented /etc/wasmfleet/agent.yaml of the wasmfleet-agent .deb (deploy/deb). It has no
// Go code; agent_test.go checks the template against the agent's configuration package
// (agent/config): it documents every setting, and it is valid once the required fields are
// filled.
package config
