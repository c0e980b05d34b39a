//go:build !unix

package store

// lockDir does nothing where there is no flock: the agent runs on Linux, and elsewhere the
// store is only used by tests and tools.
func lockDir(path string) (unlock func() error, err error) {
	return func() error { return nil }, nil
}
