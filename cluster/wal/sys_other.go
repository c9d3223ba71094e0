//go:build !unix

package wal

import (
	"fmt"
	"os"
	"runtime"
)

func lockDir(path string) (*os.File, error) {
	return nil, fmt.Errorf("wal: no folder lock on %s (needs flock)", runtime.GOOS)
}

// SyncDir does nothing here: without flock no Log opens on this system.
func SyncDir(dir string) error { return nil }
