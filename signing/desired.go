package signing

import (
	"fmt"
	"math"
	"time"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/wave"
)

// DesiredPayloadType is the DSSE payload type of a desired-state document.
const DesiredPayloadType = "application/vnd.wasmfleet.desired+json"

// MaxDesiredModules bounds the modules of one desired state.
const MaxDesiredModules = 256

// Desired is what a group or one device should run. The controller signs it with a rollout
// key; agents apply only a higher Sequence than they last applied, and never after Expires.
type Desired struct {
	Target   Target         `json:"target"`
	Sequence uint64         `json:"sequence"`
	Expires  time.Time      `json:"expires"`
	Modules  []ModuleTarget `json:"modules"`
}

// Target is the group or the device a desired state is for; exactly one is set.
type Target struct {
	Group  string `json:"group,omitempty"`
	Device string `json:"device,omitempty"`
}

func (t Target) String() string {
	if t.Device != "" {
		return "device " + t.Device
	}
	return "group " + t.Group
}

// ModuleTarget is one module of a desired state.
type ModuleTarget struct {
	// Release is what devices in the wave run.
	Release ReleaseRef `json:"release"`
	// Rollout names the rollout; with the device id it picks the device's wave bucket.
	Rollout string `json:"rollout"`
	// WavePercent (0 to 100) is how much of the target runs Release; see package wave.
	WavePercent float64 `json:"wave_percent"`
	// Previous is what devices outside the wave run (nil: nothing).
	Previous *ReleaseRef `json:"previous,omitempty"`
	// Rollback allows Release to be below the installed version.
	Rollback bool `json:"rollback,omitempty"`
}

// ReleaseRef names a signed release exactly.
type ReleaseRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	Size    uint64 `json:"size"`
}

func (r ReleaseRef) String() string { return r.Name + " " + r.Version }

// For returns the release the device should run: Release when it is in the wave, else
// Previous (nil when the module is not for it yet).
func (m ModuleTarget) For(deviceID string) *ReleaseRef {
	if wave.InWave(deviceID, m.Rollout, m.WavePercent) {
		r := m.Release
		return &r
	}
	return m.Previous
}

// Validate checks a desired state's rules.
func (d *Desired) Validate() error {
	invalid := func(format string, args ...any) error {
		return fail(ErrInvalid, "desired state: "+fmt.Sprintf(format, args...))
	}
	if (d.Target.Group == "") == (d.Target.Device == "") {
		return invalid("target must name a group or a device, not both or neither")
	}
	if d.Sequence == 0 {
		return invalid("sequence must be 1 or more")
	}
	if d.Expires.IsZero() {
		return invalid("expires is required")
	}
	if len(d.Modules) > MaxDesiredModules {
		return invalid("%d modules, more than %d", len(d.Modules), MaxDesiredModules)
	}
	seen := map[string]bool{}
	for i, m := range d.Modules {
		if err := m.Release.validate(); err != nil {
			return invalid("modules[%d].release: %v", i, err)
		}
		if seen[m.Release.Name] {
			return invalid("module %s is listed twice", m.Release.Name)
		}
		seen[m.Release.Name] = true
		if m.Rollout == "" || len(m.Rollout) > 128 {
			return invalid("modules[%d].rollout must be 1 to 128 bytes", i)
		}
		if math.IsNaN(m.WavePercent) || m.WavePercent < 0 || m.WavePercent > 100 {
			return invalid("modules[%d].wave_percent %v is out of range (0 to 100)", i, m.WavePercent)
		}
		if p := m.Previous; p != nil {
			if err := p.validate(); err != nil {
				return invalid("modules[%d].previous: %v", i, err)
			}
			if p.Name != m.Release.Name {
				return invalid("modules[%d].previous is module %s, not %s", i, p.Name, m.Release.Name)
			}
		}
	}
	return nil
}

func (r ReleaseRef) validate() error {
	probe := modules.Default(r.Name)
	probe.Version = r.Version
	if err := probe.Validate(); err != nil {
		return err
	}
	if !sha256RE.MatchString(r.SHA256) {
		return fmt.Errorf("sha256 %q is not lowercase hex SHA-256", r.SHA256)
	}
	if r.Size == 0 || r.Size > MaxModuleSize {
		return fmt.Errorf("size %d is out of range (1 to %d)", r.Size, MaxModuleSize)
	}
	return nil
}

func parseDesired(payload []byte) (*Desired, error) {
	var d Desired
	if err := decodeStrict(payload, &d); err != nil {
		return nil, failWrap(ErrMalformed, "desired state", err)
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// CheckRelease returns ErrMixAndMatch unless r is exactly the release want names.
func CheckRelease(want ReleaseRef, r *Release) error {
	got := r.Ref()
	if got != want {
		return fail(ErrMixAndMatch, fmt.Sprintf("desired state names %s (sha256 %.16s, %d bytes) but the signed release is %s (sha256 %.16s, %d bytes)",
			want, want.SHA256, want.Size, got, got.SHA256, got.Size))
	}
	return nil
}

// CheckRollback returns ErrRollback when target is below the installed version and rollback
// is not set. installed is "" when nothing is installed.
func CheckRollback(installed string, target ReleaseRef, rollback bool) error {
	if installed == "" {
		return nil
	}
	iv, err := modules.ParseVersion(installed)
	if err != nil {
		return fmt.Errorf("installed version: %w", err)
	}
	tv, err := modules.ParseVersion(target.Version)
	if err != nil {
		return failWrap(ErrInvalid, "target version", err)
	}
	if tv.Compare(iv) < 0 && !rollback {
		return fail(ErrRollback, fmt.Sprintf("%s %s is below the installed %s and the desired state does not mark a rollback",
			target.Name, target.Version, installed))
	}
	return nil
}
