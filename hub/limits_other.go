//go:build !unix

package hub

// fileLimit: no per-process descriptor limit to read here, so the
// automatic MaxConnections is no limit.
func fileLimit() (uint64, bool) { return 0, false }
