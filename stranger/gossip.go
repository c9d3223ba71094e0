package stranger

import (
	"context"
	"io"
	"log"
	"strings"

	"github.com/hashicorp/memberlist"
	"github.com/raftplane/raftplane/gossip"
)

// GossipLabel is the memberlist label raftplane nodes put on their gossip
// (cmd/raftplane sets it); a stranger knows it from the source.
const GossipLabel = "raftplane"

// GossipResponse is what a gossip join saw.
type GossipResponse struct {
	// Contacted is how many seeds answered the join.
	Contacted int `json:"contacted"`
	// Members are the member names the stranger learned.
	Members []string `json:"members"`
}

// GossipJoin joins the gossip of the node at gossipAddr as a member named
// id whose Raft address is raftAddr, encrypting with key when it is set.
// Against a cluster without a gossip key the join succeeds and the leader
// adds the member to Raft as a non-voter, then sends it the log. The
// stranger leaves memberlist (without a graceful leave) before returning.
func GossipJoin(ctx context.Context, gossipAddr string, key []byte, id, raftAddr string) Result {
	res := Result{Attack: AttackGossipJoin, Target: gossipAddr}
	meta, err := gossip.Meta{ID: id, RaftAddr: raftAddr, Version: gossip.MetaVersion}.Encode()
	if err != nil {
		res.Err = err.Error()
		return res
	}
	mc := memberlist.DefaultLocalConfig()
	mc.Name = id
	mc.BindAddr, mc.BindPort = "127.0.0.1", 0
	mc.AdvertiseAddr, mc.AdvertisePort = "", 0
	mc.Label = GossipLabel
	mc.SecretKey = key
	mc.Delegate = metaOnly(meta)
	mc.TCPTimeout = timeoutOf(ctx)
	mc.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer func() { _ = ml.Shutdown() }()
	n, err := ml.Join([]string{gossipAddr})
	resp := GossipResponse{Contacted: n}
	for _, m := range ml.Members() {
		resp.Members = append(resp.Members, m.Name)
	}
	// Connected and Answered mean a node let the stranger in: it answered
	// the join's push/pull, so the stranger learned members besides itself.
	res.Connected = n > 0
	res.Answered = n > 0 && len(resp.Members) > 1
	res.Response = resp
	if err != nil {
		res.Err = strings.Join(strings.Fields(err.Error()), " ")
	}
	return res
}

// metaOnly is a memberlist delegate that only publishes node meta.
type metaOnly []byte

func (m metaOnly) NodeMeta(limit int) []byte {
	if len(m) > limit {
		return nil
	}
	return m
}
func (metaOnly) NotifyMsg([]byte)                {}
func (metaOnly) GetBroadcasts(int, int) [][]byte { return nil }
func (metaOnly) LocalState(bool) []byte          { return nil }
func (metaOnly) MergeRemoteState([]byte, bool)   {}
