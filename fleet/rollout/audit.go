package rollout

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wasmfleet/wasmfleet/protocol/objects"
)

// AuditRecord is one object under audit/: a transition of a rollout. It is made from the
// rollout document alone (its Last transition), so whoever writes it, and however often,
// writes the same bytes under the same key.
type AuditRecord struct {
	Rollout  string `json:"rollout"`
	Group    string `json:"group"`
	Release  string `json:"release"` // name@version
	Previous string `json:"previous,omitempty"`
	Transition
}

// auditTime is the fixed-width, sortable form of a transition's time in an audit key.
const auditTime = "20060102T150405.000000000Z"

// AuditKey is audit/{time}-{id}-{step}.json for a rollout's transition: {time} is the
// transition's (UTC, fixed width, so keys sort by time), {step} its number (6 digits or
// more). Both come from the rollout document, so a restarted controller derives the same
// key and never writes a second record of one transition.
func AuditKey(rolloutID string, t Transition) string {
	return objects.AuditPrefix + t.Time.UTC().Format(auditTime) + "-" + rolloutID + "-" + fmt.Sprintf("%06d", t.Step) + ".json"
}

// ParseAuditKey returns the rollout id and step of an audit key.
func ParseAuditKey(key string) (id string, step uint64, err error) {
	rest, ok := strings.CutPrefix(key, objects.AuditPrefix)
	if ok {
		rest, ok = strings.CutSuffix(rest, ".json")
	}
	if !ok || len(rest) < len(auditTime)+3 || rest[len(auditTime)] != '-' {
		return "", 0, fmt.Errorf("%q is not an audit key", key)
	}
	if _, err := time.Parse(auditTime, rest[:len(auditTime)]); err != nil {
		return "", 0, fmt.Errorf("%q is not an audit key: %w", key, err)
	}
	rest = rest[len(auditTime)+1:]
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return "", 0, fmt.Errorf("%q is not an audit key", key)
	}
	step, err = strconv.ParseUint(rest[i+1:], 10, 64)
	if err != nil || step == 0 {
		return "", 0, fmt.Errorf("%q is not an audit key: bad step", key)
	}
	return rest[:i], step, nil
}

func auditRecord(r *Rollout) (string, []byte, error) {
	rec := AuditRecord{Rollout: r.ID, Group: r.Group, Release: r.Release.Name + "@" + r.Release.Version, Transition: r.Last}
	if r.Previous != nil {
		rec.Previous = r.Previous.Name + "@" + r.Previous.Version
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return "", nil, fmt.Errorf("encode audit record: %w", err)
	}
	return AuditKey(r.ID, r.Last), append(b, '\n'), nil
}
