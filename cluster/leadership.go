package cluster

// IsLeader reports whether this node is the Raft leader now. It reads
// raft's state without blocking, so it may be polled: hub's connection
// events runner (hub.Leadership) delivers events only while it holds. A
// deposed leader may still say true for a moment, until it learns of the
// new term; what runs on it must tolerate that (the events are
// at-least-once, with ids).
func (n *Node) IsLeader() bool { return n.isLeader() }
