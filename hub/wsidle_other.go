//go:build !linux

package hub

// canPeek: no peek here; an idle WebSocket's reader waits in gorilla
// (wsidle.go).
const canPeek = false

func (w *idleWait) peekReadable(uintptr) bool { return true }
