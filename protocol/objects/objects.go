// Package objects names the objects wasmfleet keeps in its S3-compatible bucket (the object
// layout of shared/DESIGN.md). The fleet writes these keys and agents read them, so they
// are part of the wire contract like the MQTT topics in protocol/topic.
//
// It only builds and checks key strings; it knows nothing of S3 clients or credentials.
// The rules for what a module name or version may look like are in package modules; here a
// segment is only checked so that it cannot step out of its place in the key.
package objects

import (
	"fmt"
	"strings"
)

// TrustKey is the trust file (roles, keys, thresholds) that agents fetch.
const TrustKey = "trust/root.json"

// Prefixes of the layout.
const (
	ReleasesPrefix = "releases/"
	RolloutsPrefix = "rollouts/"
	AuditPrefix    = "audit/"
)

// File names inside releases/{name}/{version}/.
const (
	ModuleFile  = "module.wasm"
	ReleaseFile = "release.dsse.json"
)

// MaxSegment is the longest name, version or id accepted in a key.
const MaxSegment = 255

// ReleaseKey is releases/{name}/{version}/release.dsse.json, the signed release envelope.
func ReleaseKey(name, version string) (string, error) {
	return releaseObject(name, version, ReleaseFile)
}

// ModuleKey is releases/{name}/{version}/module.wasm, the module a release signs.
func ModuleKey(name, version string) (string, error) {
	return releaseObject(name, version, ModuleFile)
}

// RolloutKey is rollouts/{id}.json, the controller's record of a rollout.
func RolloutKey(id string) (string, error) {
	if err := checkSegment("rollout id", id); err != nil {
		return "", err
	}
	return RolloutsPrefix + id + ".json", nil
}

func releaseObject(name, version, file string) (string, error) {
	if err := checkSegment("module name", name); err != nil {
		return "", err
	}
	if err := checkSegment("version", version); err != nil {
		return "", err
	}
	return ReleasesPrefix + name + "/" + version + "/" + file, nil
}

// checkSegment refuses what would change the shape of a key: empty, too long, a path
// separator, a dot segment, or control characters.
func checkSegment(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("object key: %s is empty", what)
	case len(s) > MaxSegment:
		return fmt.Errorf("object key: %s is %d bytes, more than %d", what, len(s), MaxSegment)
	case s == "." || s == "..":
		return fmt.Errorf("object key: %s %q is a dot segment", what, s)
	case strings.ContainsAny(s, `/\`):
		return fmt.Errorf("object key: %s %q contains a path separator", what, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("object key: %s %q contains a control character", what, s)
		}
	}
	return nil
}
