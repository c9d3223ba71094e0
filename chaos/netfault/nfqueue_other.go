//go:build !linux

package netfault

import (
	"errors"
	"time"
)

const nfqueueSupported = false

type delayer struct{}

func startDelayer(string, uint16, time.Duration, time.Duration) (*delayer, error) {
	return nil, errors.New("the NFQUEUE delayer needs Linux")
}

func (d *delayer) set(time.Duration, time.Duration) {}
func (d *delayer) stop(uint16)                      {}
