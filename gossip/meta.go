package gossip

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// MetaVersion is the Meta schema version this package writes by default.
// Decoding accepts any version; readers ignore fields they do not know.
const MetaVersion = 1

// Meta is what a node advertises to the others. It travels as JSON in the
// memberlist node meta, so its encoding must stay within
// memberlist.MetaMaxSize (512) bytes.
type Meta struct {
	// ID is the node id. It is also the memberlist node name and, for the
	// cluster package, the Raft server id.
	ID string `json:"id"`
	// RaftAddr is the host:port other nodes dial for Raft and internal RPC.
	RaftAddr string `json:"raft"`
	// HTTPAddr is the host:port of the client/REST API.
	HTTPAddr string `json:"http"`
	// ClusterID is empty until the node has applied its cluster's init entry.
	ClusterID string `json:"cluster"`
	// Leaving is set just before a graceful leave. memberlist cannot tell a
	// leave from a death (hashicorp/memberlist#266), so the flag is how
	// others report StateLeft instead of StateDead.
	Leaving bool `json:"leaving"`
	// HasData is set by a node that started with Raft state: until it
	// advertises the cluster its data belongs to, no leader may add it.
	HasData bool `json:"data,omitempty"`
	// Version is the Meta schema version (MetaVersion).
	Version int `json:"ver"`
	// LogFormat is the newest Raft log format the node's build applies (0
	// from builds that did not say: the cluster package reads it as 1).
	LogFormat int `json:"fmt,omitempty"`
	// FollowerCommits is set by a node that, as a follower, takes by itself
	// the commits the leader and it make a quorum for (the cluster
	// package's follower commits): its leader need not announce them.
	FollowerCommits bool `json:"fcommit,omitempty"`
	// DurableCommits is set by a node that, as a follower with fsync, takes
	// by itself the commits the leader and it make a quorum for once the
	// leader says its copy is on disk: its leader sends it durable notices
	// instead of commit notices.
	DurableCommits bool `json:"dcommit,omitempty"`
}

// Encode returns the wire form of m, or an error if m is invalid or its
// encoding exceeds memberlist.MetaMaxSize.
func (m Meta) Encode() ([]byte, error) {
	if err := m.checkFields(); err != nil {
		return nil, err
	}
	b, err := m.marshal()
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip: meta of node %q encodes to %d bytes, over the %d-byte memberlist limit", m.ID, len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// Validate reports whether m can be advertised: ID set, strings valid
// UTF-8, addresses (when set) in host:port form, Version not negative, and
// the encoding within memberlist.MetaMaxSize.
func (m Meta) Validate() error {
	_, err := m.Encode()
	return err
}

// DecodeMeta parses meta received from the network. It rejects input over
// memberlist.MetaMaxSize, malformed JSON and metas that would not pass
// Validate, so every Meta it returns re-encodes within the limit.
// Unknown JSON fields are ignored (newer nodes may add some).
func DecodeMeta(b []byte) (Meta, error) {
	if len(b) > memberlist.MetaMaxSize {
		return Meta{}, fmt.Errorf("gossip: meta is %d bytes, over the %d-byte limit", len(b), memberlist.MetaMaxSize)
	}
	if len(b) == 0 {
		return Meta{}, errors.New("gossip: meta is empty")
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("gossip: decode meta: %w", err)
	}
	if err := m.Validate(); err != nil {
		return Meta{}, err
	}
	return m, nil
}

// marshal encodes without HTML escaping ('<' stays one byte), so sizes are
// what a reader would expect.
func (m Meta) marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("gossip: encode meta: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func (m Meta) checkFields() error {
	if m.ID == "" {
		return errors.New("gossip: meta ID is empty")
	}
	for _, f := range []struct{ name, v string }{
		{"ID", m.ID}, {"RaftAddr", m.RaftAddr}, {"HTTPAddr", m.HTTPAddr}, {"ClusterID", m.ClusterID},
	} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("gossip: meta %s %q is not valid UTF-8", f.name, f.v)
		}
	}
	for _, f := range []struct{ name, v string }{{"RaftAddr", m.RaftAddr}, {"HTTPAddr", m.HTTPAddr}} {
		if f.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.v); err != nil {
			return fmt.Errorf("gossip: meta %s %q is not host:port: %w", f.name, f.v, err)
		}
	}
	if m.Version < 0 {
		return fmt.Errorf("gossip: meta Version (%d) is negative", m.Version)
	}
	return nil
}
