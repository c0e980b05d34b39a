package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/wasmfleet/wasmfleet/signing"
)

// StateVersion is the version of state.json this package reads and writes. A change that
// an older agent would misread gets a new version.
const StateVersion = 1

// Status values the agent writes in ModuleState.Status. Others are allowed.
const (
	StatusActive     = "active"      // Active runs; it may still be in its health window
	StatusRolledBack = "rolled-back" // Active was restored after the next release failed
)

// maxStateSize bounds state.json: 256 modules (signing.MaxDesiredModules) with two
// references each and a reason take a few hundred KiB at most.
const (
	maxStateSize = 8 << 20
	maxSourceLen = 256
	maxStatusLen = 64
)

// MaxReasonLen is the longest ModuleState.Reason; Update cuts longer ones, so that a long
// error message never stops a rollback from being recorded.
const MaxReasonLen = 4096

// State is what the agent must remember across restarts. It is stored in state.json.
type State struct {
	// Version is StateVersion.
	Version int `json:"version"`
	// Applied is the last desired-state sequence applied per source, e.g. "group/kitchen"
	// or "device/pi-1".
	Applied map[string]uint64 `json:"applied"`
	// TrustVersion is the version of the trust file in use.
	TrustVersion uint64 `json:"trust_version"`
	// Modules maps a module name to what the device runs for it.
	Modules map[string]ModuleState `json:"modules"`
}

// Kept returns the digests of the releases the state refers to: each module's Active and
// Previous. These are what the store keeps, and the compiled code worth keeping.
func (s State) Kept() map[string]bool {
	kept := map[string]bool{}
	for _, m := range s.Modules {
		if m.Active.SHA256 != "" {
			kept[m.Active.SHA256] = true
		}
		if m.Previous != nil && m.Previous.SHA256 != "" {
			kept[m.Previous.SHA256] = true
		}
	}
	return kept
}

// ModuleState is what the device runs for one module, what it falls back to, and what
// failed.
type ModuleState struct {
	// Active is the release that runs. Its Name is the module's name. It is the zero
	// ReleaseRef while nothing has been installed (the first install failed: see Failed).
	Active signing.ReleaseRef `json:"active"`
	// Previous is the release that ran before Active, kept (blob and envelope) until Active
	// is healthy, so that a failing update can be rolled back without the network.
	Previous *signing.ReleaseRef `json:"previous,omitempty"`
	// Healthy is set once Active has passed its health window.
	Healthy bool `json:"healthy"`
	// Since is when Active was activated.
	Since time.Time `json:"since"`
	// Status is StatusActive, StatusRolledBack, or another word the agent reports.
	Status string `json:"status"`
	// Reason says why the module is in this status (e.g. why it was rolled back). Update
	// cuts it to MaxReasonLen bytes.
	Reason string `json:"reason,omitempty"`
	// Source is the desired-state source that chose Active, e.g. "group/kitchen".
	Source string `json:"source,omitempty"`
	// Rollout is the id of the rollout that installed Active.
	Rollout string `json:"rollout,omitempty"`
	// Failed is the last release that could not be installed, if any.
	Failed *signing.ReleaseRef `json:"failed,omitempty"`
	// Permanent says that Failed would fail again (a bad signature, a refused policy), so
	// it is not retried.
	Permanent bool `json:"permanent,omitempty"`
	// Blocked is a release the device rolled back from, so that it is not installed again.
	Blocked *signing.ReleaseRef `json:"blocked,omitempty"`
}

// NewState returns the empty state of a new device.
func NewState() State {
	return State{Version: StateVersion, Applied: map[string]uint64{}, Modules: map[string]ModuleState{}}
}

// Clone returns a deep copy of st.
func (st State) Clone() State {
	c := st
	c.Applied = make(map[string]uint64, len(st.Applied))
	for k, v := range st.Applied {
		c.Applied[k] = v
	}
	c.Modules = make(map[string]ModuleState, len(st.Modules))
	for k, m := range st.Modules {
		m.Previous = cloneRef(m.Previous)
		m.Failed = cloneRef(m.Failed)
		m.Blocked = cloneRef(m.Blocked)
		c.Modules[k] = m
	}
	return c
}

func cloneRef(r *signing.ReleaseRef) *signing.ReleaseRef {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

// Validate checks what State must hold for the store to write it and read it back:
// the current version, valid module names and release references (each naming its own
// module; Active may be zero, then Previous must be nil), and bounded strings.
func (st *State) Validate() error {
	if st.Version != StateVersion {
		return fmt.Errorf("version is %d, want %d", st.Version, StateVersion)
	}
	for src := range st.Applied {
		if err := checkUTF8(src, 1, maxSourceLen); err != nil {
			return fmt.Errorf("applied: source %q %v", src, err)
		}
	}
	for name, m := range st.Modules {
		if !nameRE.MatchString(name) {
			return fmt.Errorf("modules: %q is not a module name (1 to 63 of a-z, 0-9 and -)", name)
		}
		type field struct {
			name string
			ref  *signing.ReleaseRef
		}
		var active *signing.ReleaseRef
		if m.Active != (signing.ReleaseRef{}) {
			active = &m.Active
		} else if m.Previous != nil {
			return fmt.Errorf("modules[%s] has a previous release but no active one", name)
		}
		refs := []field{{"active", active}, {"previous", m.Previous}, {"failed", m.Failed}, {"blocked", m.Blocked}}
		for _, r := range refs {
			if r.ref == nil {
				continue
			}
			if err := checkRef(*r.ref); err != nil {
				return fmt.Errorf("modules[%s].%s: %w", name, r.name, err)
			}
			if r.ref.Name != name {
				return fmt.Errorf("modules[%s].%s is a release of %s", name, r.name, r.ref.Name)
			}
		}
		if err := checkText(m.Status, 0, maxStatusLen); err != nil {
			return fmt.Errorf("modules[%s].status %v", name, err)
		}
		if len(m.Reason) > MaxReasonLen {
			return fmt.Errorf("modules[%s].reason is %d bytes, more than %d", name, len(m.Reason), MaxReasonLen)
		}
		if err := checkUTF8(m.Source, 0, maxSourceLen); err != nil {
			return fmt.Errorf("modules[%s].source %v", name, err)
		}
		if err := checkUTF8(m.Rollout, 0, maxSourceLen); err != nil {
			return fmt.Errorf("modules[%s].rollout %v", name, err)
		}
	}
	return nil
}

// checkUTF8 accepts UTF-8 of min to max bytes: what JSON carries unchanged.
func checkUTF8(s string, min, max int) error {
	if len(s) < min || len(s) > max {
		return fmt.Errorf("must be %d to %d bytes", min, max)
	}
	if !utf8.ValidString(s) {
		return errors.New("is not UTF-8")
	}
	return nil
}

// checkText accepts printable UTF-8 of min to max bytes.
func checkText(s string, min, max int) error {
	if len(s) < min || len(s) > max {
		return fmt.Errorf("must be %d to %d bytes", min, max)
	}
	if !utf8.ValidString(s) {
		return errors.New("is not UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("holds the unprintable %U", r)
		}
	}
	return nil
}

// parseState decodes state.json. An error wrapping ErrStateVersion means the file is of
// another version; any other error means it is damaged.
func parseState(data []byte) (State, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return State{}, errors.New("the file is empty")
	}
	// The version decides how to read the rest, so it is read alone first; a file that is
	// not JSON at all is damaged whatever it claims.
	var probe struct {
		Version *json.RawMessage `json:"version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return State{}, fmt.Errorf("not a JSON object: %w", err)
	}
	if probe.Version == nil {
		return State{}, errors.New("no version field")
	}
	var v int
	if err := json.Unmarshal(*probe.Version, &v); err != nil {
		return State{}, fmt.Errorf("version %s is not an integer", *probe.Version)
	}
	if v != StateVersion {
		return State{}, fmt.Errorf("%w: version %d (this agent reads version %d; was it written by a newer agent?)", ErrStateVersion, v, StateVersion)
	}
	var st State
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return State{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return State{}, errors.New("data after the JSON object")
	}
	if st.Applied == nil {
		st.Applied = map[string]uint64{}
	}
	if st.Modules == nil {
		st.Modules = map[string]ModuleState{}
	}
	if err := st.Validate(); err != nil {
		return State{}, err
	}
	return st, nil
}

// loadState reads state.json into s.state; see Open.
func (s *Store) loadState() error {
	p := filepath.Join(s.dir, stateFile)
	data, fi, err := readSmall(p, maxStateSize)
	if errors.Is(err, os.ErrNotExist) {
		s.state = NewState()
		s.log.Info().Str("dir", s.dir).Msg("no state.json: starting with an empty state")
		return nil
	}
	var problem error
	switch {
	case errors.Is(err, errNotRegular) || errors.Is(err, errTooLarge):
		problem = err
	case err != nil:
		return fmt.Errorf("open store: read %s: %w", p, err)
	default:
		s.state, problem = parseState(data)
		if problem == nil {
			return nil
		}
		if errors.Is(problem, ErrStateVersion) {
			return fmt.Errorf("open store: %s: %w; it was left in place", p, problem)
		}
	}
	to, err := s.moveAside(p, fi)
	if err != nil {
		return fmt.Errorf("open store: %s cannot be read (%v), and moving it aside failed: %w", p, problem, err)
	}
	s.log.Error().Str("file", p).Str("moved_to", to).AnErr("problem", problem).Msg("state.json cannot be read; moved aside")
	return fmt.Errorf("open store: %s cannot be read (%v); %s, and the next Open starts with an empty state: %w",
		p, problem, movedTo(to), ErrCorrupt)
}

// State returns a copy of the current state.
func (s *Store) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.Clone()
}

// Update calls fn with a copy of the state and, when fn returns nil, writes the changed
// state to state.json atomically (temp file, fsync, rename, fsync directory) before it
// returns. When fn or the write fails, neither the state in memory nor state.json changes;
// fn's error is returned as it is. The state must pass Validate. fn runs under the store's
// lock: it must not call the Store.
func (s *Store) Update(fn func(*State) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("update state: %w", ErrClosed)
	}
	next := s.state.Clone()
	if err := fn(&next); err != nil {
		return err
	}
	if next.Applied == nil {
		next.Applied = map[string]uint64{}
	}
	if next.Modules == nil {
		next.Modules = map[string]ModuleState{}
	}
	for name, m := range next.Modules {
		if len(m.Reason) > MaxReasonLen {
			m.Reason = cut(m.Reason, MaxReasonLen)
			next.Modules[name] = m
		}
	}
	if err := next.Validate(); err != nil {
		return fmt.Errorf("update state: %w: %w", ErrInvalid, err)
	}
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("update state: encode: %w", err)
	}
	if len(data)+1 > maxStateSize {
		return fmt.Errorf("update state: %w: state.json would be %d bytes, more than %d", ErrInvalid, len(data), maxStateSize)
	}
	if err := s.writeFile(filepath.Join(s.dir, stateFile), append(data, '\n'), filePerm); err != nil {
		return fmt.Errorf("update state: %w", err)
	}
	// A copy again: fn may have kept pointers into next.
	s.state = next.Clone()
	return nil
}

// cut shortens s to at most n bytes, at a rune boundary, marking the cut with "…".
func cut(s string, n int) string {
	const mark = "…"
	n -= len(mark)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}
