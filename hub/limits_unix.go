//go:build unix

package hub

import "syscall"

// fileLimit returns the soft RLIMIT_NOFILE of the process. (The Go runtime
// raises the soft limit to the hard one at start-up, so this is the hard
// limit unless something lowered it.)
func fileLimit() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true
}
