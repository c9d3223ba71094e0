package main

import (
	"os/exec"
	"syscall"
)

// dieWithTool has the kernel send a node SIGTERM when the tool exits, however
// it exits: a tool killed by a signal it does not catch (SIGPIPE, when its
// output is piped into a reader that stops early, or SIGKILL) has no chance
// to stop its nodes, which then ran on and loaded the machine for the next
// measurement.
func dieWithTool(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
