//go:build !linux

package residency

// ReleaseCode does nothing outside Linux.
func ReleaseCode() (int64, error) { return 0, nil }

// Resident cannot tell outside Linux.
func Resident() (uint64, bool) { return 0, false }
