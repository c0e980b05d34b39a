package modules

import (
	"fmt"
	"strings"

	"github.com/wasmfleet/wasmfleet/protocol/topic"
)

// Policy is what a device allows any module. A manifest asking for more is refused with the
// reason, never silently cut down. Zero fields allow anything.
type Policy struct {
	MaxMemory      Size     // largest limits.memory (after defaults)
	MaxTimeout     Duration // longest limits.timeout (after defaults)
	MaxConcurrency int      // largest limits.concurrency
	MaxKV          Size     // largest capabilities.kv.max_bytes
	// TopicPrefixes, when set, is the list of prefixes that every publish pattern, output
	// topic and MQTT trigger must start with (after {device} is expanded).
	TopicPrefixes []string
}

// Check reports every way m asks for more than p allows on device, or nil.
func (p Policy) Check(m *Manifest, device string) error {
	var ps Problems
	l := m.Limits.WithDefaults()
	if p.MaxMemory != 0 && l.Memory > p.MaxMemory {
		ps.add("limits.memory", "asks for %s, this device allows at most %s", l.Memory, p.MaxMemory)
	}
	if p.MaxTimeout != 0 && l.Timeout > p.MaxTimeout {
		ps.add("limits.timeout", "asks for %s, this device allows at most %s", l.Timeout, p.MaxTimeout)
	}
	if p.MaxConcurrency != 0 && l.Concurrency > p.MaxConcurrency {
		ps.add("limits.concurrency", "asks for %d, this device allows at most %d", l.Concurrency, p.MaxConcurrency)
	}
	if kv := m.Capabilities.KV; kv != nil && p.MaxKV != 0 && kv.MaxBytes > p.MaxKV {
		ps.add("capabilities.kv.max_bytes", "asks for %s, this device allows at most %s", kv.MaxBytes, p.MaxKV)
	}
	if len(p.TopicPrefixes) > 0 {
		check := func(path, pattern string) {
			t := topic.Expand(pattern, device)
			for _, pre := range p.TopicPrefixes {
				if strings.HasPrefix(t, pre) && !strings.ContainsAny(pre, "+#") {
					return
				}
			}
			ps.add(path, "%q is outside the topics this device allows (%s)", pattern, strings.Join(p.TopicPrefixes, ", "))
		}
		for i, f := range m.Capabilities.Publish {
			check(fmt.Sprintf("capabilities.publish[%d]", i), f)
		}
		if m.Output != "" {
			check("output", m.Output)
		}
		for i, t := range m.Triggers {
			if t.MQTT != "" {
				check(fmt.Sprintf("triggers[%d].mqtt", i), t.MQTT)
			}
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return fmt.Errorf("refused by device policy: %w", ps)
}
