package cluster

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// DiskFailFileEnv names a file a node checks every ClockPoll: while it
// exists, every write to the node's Raft stores (and its disk probe) fails
// with EIO before reaching the disk, as a failing disk's writes do. It is
// a test hook (the chaos suite's disk-fail nemeses), like ClockFileEnv: a
// disk whose writes fail cannot be made from outside the process on every
// machine (no device-mapper here), and what is tested is the node's
// answer, the same as to ENOSPC (disk.go). A node started with it logs a
// warning.
const DiskFailFileEnv = "RAFTPLANE_TEST_DISK_FAIL_FILE"

// errInjectedEIO is the error the hook makes writes fail with.
var errInjectedEIO = fmt.Errorf("test hook %s: %w", DiskFailFileEnv, syscall.EIO)

// diskHook is the DiskFailFileEnv hook of a node.
type diskHook struct {
	file string
	on   atomic.Bool
}

// newDiskHook reads DiskFailFileEnv; nil without it.
func newDiskHook(getenv func(string) string) *diskHook {
	file := strings.TrimSpace(getenv(DiskFailFileEnv))
	if file == "" {
		return nil
	}
	h := &diskHook{file: file}
	h.poll(nil)
	return h
}

// err is the injected error while the hook's file exists, else nil.
func (h *diskHook) err() error {
	if h != nil && h.on.Load() {
		return errInjectedEIO
	}
	return nil
}

// poll looks for the file, and logs a change.
func (h *diskHook) poll(lg *slog.Logger) {
	_, err := os.Stat(h.file)
	on := err == nil
	if h.on.Swap(on) != on && lg != nil {
		lg.Warn("TEST HOOK: disk writes "+map[bool]string{true: "fail (EIO)", false: "go to the disk again"}[on], "file", h.file)
	}
}

// watch polls the file every ClockPoll until stop closes.
func (h *diskHook) watch(stop <-chan struct{}, lg *slog.Logger) {
	t := time.NewTicker(ClockPoll)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			h.poll(lg)
		}
	}
}
