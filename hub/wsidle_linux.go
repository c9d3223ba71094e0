package hub

import "syscall"

// canPeek: the socket can be peeked at (wsidle.go).
const canPeek = true

// peekReadable reports, for syscall.RawConn.Read, whether the socket has
// something to read: a one-byte peek, which leaves the byte for gorilla.
// Only "would block" is false, which makes RawConn.Read wait for the
// socket to become readable and ask again; data, the peer's end (0 bytes)
// and errors are true, and gorilla's read then finds them.
func (w *idleWait) peekReadable(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), w.peek[:], syscall.MSG_PEEK)
	return err != syscall.EAGAIN
}
