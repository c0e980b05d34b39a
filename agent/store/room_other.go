//go:build !linux

package store

// freeBytes cannot tell outside Linux (the agent's platform): the write itself will.
func freeBytes(string) (int64, bool) { return 0, false }
