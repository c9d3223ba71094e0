//go:build !linux

package hub

import (
	"errors"
	"time"
)

// poller: no epoll here, so idle WebSocket readers wait in their sockets
// (wspark.go); newPoller says so and the server runs without one.
type poller struct{}

func newPoller(*Server, time.Duration) (*poller, error) {
	return nil, errors.New("no poller on this platform")
}

func (*poller) arm(*parking, *idleWait, time.Time) bool { return false }
func (*poller) release(*parking)                        {}
func (*poller) run()                                    {}
func (*poller) close()                                  {}
func (*poller) fail()                                   {}
