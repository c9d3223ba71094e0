package raftplane

import (
	"context"
	"fmt"
	"io"

	"github.com/raftplane/raftplane/cluster"
)

// backup serves the hub's GET /api/v1/snapshot (hub/backup.go): a
// point-in-time backup of the replicated state (cluster.Node.Backup). Like
// the hub's other views of the node, it answers before Start without
// touching Raft.
func (n *Node) backup(ctx context.Context, w io.Writer) error {
	if !n.opened.Load() {
		return fmt.Errorf("%w: the node has not started", cluster.ErrNotReady)
	}
	return n.raft.Backup(ctx, w)
}
