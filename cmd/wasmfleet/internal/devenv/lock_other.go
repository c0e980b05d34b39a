//go:build !unix

package devenv

import (
	"fmt"
	"os"
)

// lockDir only creates the lock file on systems without flock: two `wasmfleet dev` in one
// directory are not prevented there.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

func unlockDir(f *os.File) error { return f.Close() }

func locked(string) bool { return false }
