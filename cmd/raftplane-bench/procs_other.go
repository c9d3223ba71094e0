//go:build !linux

package main

import (
	"os"
	"os/exec"
)

// dieWithTool does nothing where the kernel offers no parent-death signal:
// the tool stops its nodes itself when it ends normally or is interrupted.
func dieWithTool(*exec.Cmd) {}

// datasync flushes f's data: fsync where there is no fdatasync.
func datasync(f *os.File) error { return f.Sync() }
