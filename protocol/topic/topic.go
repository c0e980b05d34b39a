// Package topic holds the MQTT topic rules wasmfleet relies on: validating topic names and
// filters, matching a topic against a filter (with + and # wildcards), and expanding the
// {device} placeholder that manifests use in publish patterns and triggers.
//
// It implements MQTT 3.1.1 section 4.7; it knows nothing of brokers or connections.
package topic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// DevicePlaceholder is replaced by the device id in manifest patterns.
const DevicePlaceholder = "{device}"

// MaxLen is the longest topic MQTT can carry (a two-byte length prefix).
const MaxLen = 65535

// ValidateName reports why name cannot be published to, or nil. A topic name is non-empty,
// at most MaxLen bytes, valid UTF-8 without NUL, and has no wildcards.
func ValidateName(name string) error {
	if err := validateCommon(name); err != nil {
		return err
	}
	if strings.ContainsAny(name, "+#") {
		return fmt.Errorf("topic %q contains a wildcard (+ or #)", name)
	}
	return nil
}

// ValidateFilter reports why filter is not a valid subscription filter, or nil: each + must be a
// whole level, and # must be a whole level and the last one.
func ValidateFilter(filter string) error {
	if err := validateCommon(filter); err != nil {
		return err
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("filter %q: # must be a whole level and the last one", filter)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("filter %q: + must be a whole level", filter)
		}
	}
	return nil
}

func validateCommon(s string) error {
	switch {
	case s == "":
		return errors.New("topic is empty")
	case len(s) > MaxLen:
		return fmt.Errorf("topic is %d bytes, longer than %d", len(s), MaxLen)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("topic %q contains NUL", s)
	case !utf8.ValidString(s):
		return fmt.Errorf("topic %q is not valid UTF-8", s)
	}
	return nil
}

// Match reports whether topic matches filter. Neither is validated here; an invalid filter
// simply matches nothing it should not. Topics starting with '$' are not matched by a filter
// whose first level is a wildcard (MQTT 3.1.1 section 4.7.2).
func Match(filter, topic string) bool {
	if topic == "" || filter == "" {
		return false
	}
	if topic[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" && !fmore {
			return true // # matches this level and everything below, including the parent
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// topic ended; "a/#" matches "a"
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// Expand replaces every {device} in pattern with device.
func Expand(pattern, device string) string {
	if !strings.Contains(pattern, DevicePlaceholder) {
		return pattern
	}
	return strings.ReplaceAll(pattern, DevicePlaceholder, device)
}

// ValidateDeviceID reports why id cannot be a device id, or nil. Ids appear in topics and
// object keys, so they are 1 to 128 bytes of [A-Za-z0-9._-] and do not start with '.'.
func ValidateDeviceID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("device id %q must be 1 to 128 bytes", id)
	}
	if id[0] == '.' {
		return fmt.Errorf("device id %q must not start with '.'", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("device id %q: character %q is not allowed (use A-Z a-z 0-9 . _ -)", id, c)
		}
	}
	return nil
}
