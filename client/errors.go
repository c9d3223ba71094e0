package client

import (
	"errors"
	"fmt"
)

// ErrClosed is returned by calls on a connection that Close has closed, and
// by Invokes that were pending when it was closed.
var ErrClosed = errors.New("client: connection closed")

// InvocationError is a Completion that carried an error: the server ran (or
// refused to run) the method and said why. The connection stays usable.
type InvocationError struct {
	Method  string // the invoked method
	Message string // the server's error text
}

// Error implements error.
func (e *InvocationError) Error() string {
	return fmt.Sprintf("client: %s: server error: %s", e.Method, e.Message)
}

// CloseError is a Close message from the server: it ended the connection.
// AllowReconnect is the server's hint that reconnecting (to this node or
// another) is expected to work, as when a node shuts down or drops a client
// that fell too far behind.
type CloseError struct {
	Message        string // the Close message's error; "" for a normal close
	AllowReconnect bool
}

// Error implements error.
func (e *CloseError) Error() string {
	s := "client: server closed the connection"
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.AllowReconnect {
		s += " (reconnect allowed)"
	}
	return s
}

// HTTPError is a non-success HTTP answer to negotiate or to the WebSocket
// request. StatusCode lets callers tell a refusal (401, 403, 404) from a node
// that is not ready or is shutting down (503), which is worth retrying on
// another node.
type HTTPError struct {
	Op         string // "negotiate" or "connect"
	URL        string // the hub URL (without the connection token)
	StatusCode int
	Message    string // the server's error message, or the start of the body
}

// Error implements error.
func (e *HTTPError) Error() string {
	s := fmt.Sprintf("client: %s %s: HTTP %d", e.Op, e.URL, e.StatusCode)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// ErrDropped means the transport dropped unexpectedly (a transport error, a
// server timeout, a server Close that allows reconnecting) while Resume was
// on. Invokes that were waiting for their Completion at that moment fail
// with an error wrapping it, and so do Sends and Invokes whose write failed:
// their outcome is unknown, because the server may have received and even
// committed them before the drop. Err wraps it when resuming gave up
// (ResumeTimeout passed).
var ErrDropped = errors.New("client: connection dropped")

// ErrReset is wrapped by *ResetError: the connection could not be resumed
// without a gap, so messages sent to it while it was away may be lost.
var ErrReset = errors.New("client: connection reset")

// ResetError is a resume the server refused (an expired cursor, a cursor
// from another cluster, a connection the server already closed) or one
// that was not possible (nothing to resume from). Messages may have been
// lost: the client says so rather than carrying on with a silent gap. It
// wraps ErrReset.
type ResetError struct {
	Message string // the server's reason ("Resume refused: ..."), or the client's
	Cursor  string // the cursor the resume was asked from; "" if there was none
}

// Error implements error.
func (e *ResetError) Error() string {
	s := "client: connection reset, messages may have been lost: " + e.Message
	if e.Cursor != "" {
		s += " (resume cursor " + e.Cursor + ")"
	}
	return s
}

// Unwrap returns ErrReset.
func (e *ResetError) Unwrap() error { return ErrReset }

// dropError marks a transport failure, after which a resume may follow. Its
// text is the underlying error's.
type dropError struct{ err error }

func (e *dropError) Error() string { return e.err.Error() }
func (e *dropError) Unwrap() error { return e.err }
