//go:build !linux

package diskfault

import "errors"

var errUnsupported = errors.New("diskfault: small disks need Linux mount namespaces")

func mountTmpfs(string, int64) error   { return errUnsupported }
func unmount(string) error             { return errUnsupported }
func freeBytes(string) (uint64, error) { return 0, errUnsupported }
