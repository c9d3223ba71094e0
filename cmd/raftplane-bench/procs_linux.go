package main

import (
	"os"
	"os/exec"
	"syscall"
)

// dieWithTool has the kernel send a node SIGTERM when the tool exits, however
// it exits: a tool killed by a signal it does not catch (SIGPIPE, when its
// output is piped into a reader that stops early, or SIGKILL) has no chance
// to stop its nodes, which then ran on and loaded the machine for the next
// measurement. (The kernel ties the signal to the thread that started the
// node; the Go runtime ends a thread only when a goroutine locked to it
// exits, which the tool's starters never are.)
func dieWithTool(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// datasync flushes f's data as the log does (cluster/wal): fdatasync.
func datasync(f *os.File) error {
	for {
		if err := syscall.Fdatasync(int(f.Fd())); err != syscall.EINTR {
			return err
		}
	}
}
