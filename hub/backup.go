package hub

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// SnapshotFunc writes a backup of the replicated state to w: a consistent
// point-in-time copy in a self-checking file (cluster.Node.Backup). An
// error after the first byte leaves the file incomplete.
type SnapshotFunc func(ctx context.Context, w io.Writer) error

// handleSnapshot serves GET /api/v1/snapshot: a backup of the replicated
// state, streamed as it is written (`raftplane snapshot save`). A failure
// before the first byte is a JSON error; after it the response is cut
// off, so that the client sees a broken transfer and never a file that
// merely looks complete (the file's checksum would tell anyway).
//
// The backup holds the cluster secret (it signs connection tokens) and
// every cached message, so without an API key it is served to loopback
// clients only.
func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Snapshot == nil {
		writeError(w, http.StatusNotFound, "this node does not serve backups")
		return
	}
	if s.cfg.APIKey == "" && !loopbackRemote(r) {
		writeError(w, http.StatusForbidden, "without -api-key, backups are served to loopback clients only: a backup holds the cluster secret and every cached message")
		return
	}
	start := time.Now()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	name := fmt.Sprintf("raftplane-%s-%s.snap", s.stream.Epoch(), start.UTC().Format("20060102-150405"))
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	cw := &countingWriter{w: w}
	err := s.cfg.Snapshot(r.Context(), cw)
	switch {
	case err == nil:
		s.log.Info("backup served", "bytes", cw.n, "remote", r.RemoteAddr, "took", time.Since(start).Round(time.Millisecond))
	case cw.n == 0:
		h.Del("Content-Disposition")
		writeError(w, http.StatusServiceUnavailable, "backup failed: "+err.Error())
	default:
		s.log.Warn("backup failed while being sent; the transfer is cut off", "bytes", cw.n, "remote", r.RemoteAddr, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// loopbackRemote reports whether the request comes from this host.
func loopbackRemote(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// countingWriter counts what reached the response.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
