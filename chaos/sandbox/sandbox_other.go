//go:build !linux

package sandbox

import "runtime"

// Enter reports that the sandbox is unavailable: namespaces are Linux-only.
func Enter() (Result, error) {
	return Result{Reason: "network, mount and PID namespaces need Linux (this is " + runtime.GOOS + ")"}, nil
}
