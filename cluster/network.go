package cluster

import (
	"context"
	"errors"
	"net"

	"github.com/hashicorp/raft"
)

// What a node is given rather than builds (hashicorp/raft's own shape:
// NewRaft takes its stores and transport): the network its Raft port
// lives on (Config.Network) and the Raft stores (Config.RaftStores). The
// defaults are what a deployment uses, TCP and raft.db with snapshots in
// DataDir; tests inject an in-memory network they can partition
// (internal/memnet) and raft's in-memory stores.

// Network is what a node listens and dials on. The node listens once, on
// RaftBind, and everything it serves there goes through that one
// listener: Raft's transport and the node's RPC share the port behind the
// mux (mux.go), whatever the network, so a node has one address for its
// peers on every network and a partition of the network cuts both. Every
// connection a node opens to a peer's Raft port goes through Dial. Peer
// TLS, when configured, is layered on the connections either returns.
type Network interface {
	// Listen listens on addr (host:port; port 0 picks a free one, which
	// the listener's Addr reports).
	Listen(addr string) (net.Listener, error)
	// Dial connects to addr; ctx bounds the attempt.
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// tcpNetwork is the default Network: the operating system's TCP.
type tcpNetwork struct{}

func (tcpNetwork) Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func (tcpNetwork) Dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// network is the Network the node uses: the configured one, or TCP.
func (c Config) network() Network {
	if c.Network == nil {
		return tcpNetwork{}
	}
	return c.Network
}

// RaftStores are Raft stores a caller opened itself and hands to a node
// (Config.RaftStores) instead of raft.db and the snapshots folder in
// DataDir: raft.NewInmemStore and raft.NewInmemSnapshotStore in tests, or
// stores of the caller's choice. The caller owns them: Node.Close does
// not close them (a node opened again on the same stores finds its
// state, as a restart finds raft.db), and only one open node may use them
// at a time. The node still puts its log cache and its disk-fault watch
// (disk.go) in front of them.
type RaftStores struct {
	Logs   raft.LogStore
	Stable raft.StableStore
	Snaps  raft.SnapshotStore
}

// ErrInjectedStores is returned by what works only on the stores a node
// opens in DataDir (raft.db, the snapshots folder), on a node given
// Config.RaftStores: a node cannot delete or inspect files it does not
// have.
var ErrInjectedStores = errors.New("cluster: not available with injected stores (Config.RaftStores)")
