package modules

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Size is a number of bytes. In a manifest it is written as an integer or with a binary or
// decimal unit: 65536, 64KiB, 4MiB, 1GiB, 16KB, 2MB. It is signed (canonical JSON) as an
// integer.
type Size uint64

// Binary units.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
)

var sizeUnits = []struct {
	suffix string
	mult   uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseSize parses "4MiB", "65536" or "16KB".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := uint64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || t == "" {
		return 0, fmt.Errorf("%q is not a size (use bytes or a unit: 64KiB, 4MiB, 1GiB)", s)
	}
	if n > (1<<63)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Size(n * mult), nil
}

// String renders the size with the largest binary unit that divides it.
func (s Size) String() string {
	switch {
	case s != 0 && s%GiB == 0:
		return fmt.Sprintf("%dGiB", s/GiB)
	case s != 0 && s%MiB == 0:
		return fmt.Sprintf("%dMiB", s/MiB)
	case s != 0 && s%KiB == 0:
		return fmt.Sprintf("%dKiB", s/KiB)
	}
	return strconv.FormatUint(uint64(s), 10)
}

// MarshalJSON writes the size as an integer number of bytes.
func (s Size) MarshalJSON() ([]byte, error) { return strconv.AppendUint(nil, uint64(s), 10), nil }

// UnmarshalJSON accepts an integer or a string with a unit.
func (s *Size) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case float64:
		if v < 0 || v != float64(uint64(v)) {
			return fmt.Errorf("%v is not a size", v)
		}
		*s = Size(v)
		return nil
	case string:
		n, err := ParseSize(v)
		*s = n
		return err
	}
	return fmt.Errorf("%s is not a size", b)
}

// Duration is a time span written as Go writes durations: 50ms, 30s, 1m30s.
type Duration time.Duration

// String renders the duration as Go does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string such as "50ms".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s is not a duration (write it as \"50ms\")", b)
	}
	v, err := ParseDuration(s)
	*d = v
	return err
}

// ParseDuration parses "50ms" or "30s".
func ParseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use 50ms, 30s, 5m)", s)
	}
	return Duration(v), nil
}
