package fsm

import (
	"bufio"
	"encoding/gob"
	"fmt"
	"io"
	"slices"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// snapshotVersion is the first byte of every snapshot, before the gob stream.
const snapshotVersion = 1

// errCodes maps outcome errors to stable codes for snapshots (and, later,
// for forwarding results between nodes).
// Codes are only ever appended: ErrOutOfOrder (5) exists from log format 3
// (a node of an older build never receives it: it is produced only once
// every server knows that format).
var errCodes = []error{nil, ErrUnknownConnection, ErrConnectionExists, ErrResumeDenied, ErrExpired, ErrOutOfOrder}

// ErrorCode returns the stable code of an Apply outcome error (0 for nil).
func ErrorCode(err error) uint8 {
	for i, e := range errCodes {
		if e == err {
			return uint8(i)
		}
	}
	panic(fmt.Sprintf("fsm: outcome error without a code: %v", err))
}

// ErrorFromCode is the inverse of ErrorCode.
func ErrorFromCode(code uint8) (error, bool) {
	if int(code) < len(errCodes) {
		return errCodes[code], true
	}
	return nil, false
}

// snapshotData is the serialised form of state.
type snapshotData struct {
	Epoch   string
	Secret  []byte
	Applied uint64
	Last    Cursor
	Floor   Cursor
	Newest  int64
	Entries []snapshotEntry
	Conns   []snapshotConn
	DedupQ  []dedupItem
	Dedup   []Cursor // parallel to DedupQ
	Digest  uint64
	// Format was added with log format 2; gob leaves it 0 in a snapshot an
	// older build wrote, and an older build ignores it. So is EventsDone.
	Format     uint32
	EventsDone Cursor
}

type snapshotEntry struct {
	Cursor  Cursor
	Command []byte
	ErrCode uint8
	Groups  []string
	// User is a close's user, which its encoding does not carry (Apply
	// sets it; see Command.User).
	User string
}

// snapshotConn is a connection with its membership history.
type snapshotConn struct {
	ConnInfo
	History    []groupChange
	Base       Cursor
	BaseGroups []string
}

// snapshot is a point-in-time view of the state: the registry copied, the
// cache and the dedup queue captured as slices of arrays that applies do
// not write in place while a snapshot is pinned (evictLocked), encoded in
// Persist.
type snapshot struct {
	data     snapshotData
	entries  []slot
	dedupQ   []dedupItem
	m        *Machine
	released atomic.Bool
}

// Snapshot captures the state under the read lock, cheaply: the cache (up
// to CacheMaxEntries commands) and the dedup queue are captured, not
// copied or encoded, so an Apply waiting for the lock waits for a copy of
// the connection registry only (O(connections)); the encoding happens in
// Persist, concurrently with further applies, as raft's FSMSnapshot
// contract intends. Release unpins the captured arrays.
func (m *Machine) Snapshot() (raft.FSMSnapshot, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	st := m.st
	d := snapshotData{Epoch: st.Epoch, Secret: st.Secret, Applied: st.Applied, Last: st.Last, Floor: st.Floor, Newest: st.Newest, Digest: st.Digest, Format: st.Format, EventsDone: st.EventsDone}
	for hubName, h := range st.Hubs {
		for id, cs := range h.Conns {
			ack := cs.acked()
			ci := ConnInfo{ID: id, Hub: hubName, User: cs.User, Node: cs.Node, Opened: cs.Opened,
				ClientSeq: ack.ClientSeq, AckSeq: ack.AckSeq, AckAt: ack.AckAt, Groups: cloneGroups(cs.Groups)}
			// The base's groups are shared: a fold replaces them, never
			// writes them.
			base, baseGroups := cs.base()
			d.Conns = append(d.Conns, snapshotConn{ConnInfo: ci, History: append([]groupChange(nil), cs.History...),
				Base: base, BaseGroups: baseGroups})
		}
	}
	m.pins.Add(1)
	return &snapshot{data: d, entries: st.Entries, dedupQ: st.DedupQ, m: m}, nil
}

// fill lays the captured cache and dedup queue out as data: the cached
// commands are already encoded, and their bytes are never written in place,
// so they are shared, not copied.
func (s *snapshot) fill() {
	if s.data.Entries != nil || len(s.entries) == 0 && len(s.dedupQ) == 0 {
		return
	}
	s.data.Entries = make([]snapshotEntry, len(s.entries))
	for i := range s.entries {
		e := &s.entries[i]
		s.data.Entries[i] = snapshotEntry{Cursor: e.Cursor, Command: e.cmd, ErrCode: e.err, Groups: e.groups, User: e.user}
	}
	s.data.DedupQ = s.dedupQ
	s.data.Dedup = make([]Cursor, len(s.dedupQ))
	for i, it := range s.dedupQ {
		s.data.Dedup[i] = it.At
	}
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	s.fill()
	w := bufio.NewWriter(sink)
	err := w.WriteByte(snapshotVersion)
	if err == nil {
		err = gob.NewEncoder(w).Encode(&s.data)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release unpins the captured arrays (once, however often it is called).
func (s *snapshot) Release() {
	if s.released.CompareAndSwap(false, true) {
		s.m.pins.Add(-1)
	}
}

// Restore replaces the state with a snapshot's. It builds the new state
// aside and swaps it in under the lock, then wakes every reader, because
// raft's "no Apply during Restore" does not cover readers on other
// goroutines.
//
// A snapshot older than what the machine applied is refused
// (ErrStaleSnapshot) and the machine is left as it was: raft then keeps its
// own applied index too. raft installs whatever snapshot a leader sends; a
// leader replicating to a removed server whose address a new node took
// (chaos, replace-voter) sent one older than the new node had applied, raft
// set its applied index back to it, and the next commit index made it look
// for entries it had already compacted: "panic: log not found".
func (m *Machine) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReader(rc)
	v, err := br.ReadByte()
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if v != snapshotVersion {
		return fmt.Errorf("fsm: restore: unknown snapshot version %d", v)
	}
	var d snapshotData
	if err := gob.NewDecoder(br).Decode(&d); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if d.Last.Index > d.Applied {
		return fmt.Errorf("fsm: restore: last command %s after the applied index %d", d.Last, d.Applied)
	}
	m.mu.RLock()
	applied := m.st.Applied
	m.mu.RUnlock()
	if d.Applied < applied {
		return fmt.Errorf("fsm: restore: %w: the snapshot is at index %d, this machine applied %d", ErrStaleSnapshot, d.Applied, applied)
	}
	st := newState()
	st.Epoch, st.Secret, st.Applied, st.Last, st.Floor, st.Newest = d.Epoch, d.Secret, d.Applied, d.Last, d.Floor, d.Newest
	st.Format, st.EventsDone = d.Format, d.EventsDone
	st.Digest = d.Digest
	st.Entries = make([]slot, len(d.Entries))
	for i, se := range d.Entries {
		c, err := DecodeCommand(se.Command)
		if err != nil {
			return fmt.Errorf("fsm: restore entry %s: %w", se.Cursor, err)
		}
		e, ok := ErrorFromCode(se.ErrCode)
		if !ok {
			return fmt.Errorf("fsm: restore entry %s: unknown outcome code %d", se.Cursor, se.ErrCode)
		}
		if (i > 0 && !d.Entries[i-1].Cursor.Less(se.Cursor)) || d.Last.Less(se.Cursor) {
			// Since relies on the order; a snapshot this machine wrote has it.
			return fmt.Errorf("fsm: restore entry %s: out of order (last %s)", se.Cursor, d.Last)
		}
		s := slot{Cursor: se.Cursor, Time: c.Time, cmd: se.Command, groups: se.Groups, err: se.ErrCode}
		if c.Kind == KindConnClose {
			c.User = se.User
			s.user = se.User
		}
		// The bytes are kept as the snapshot has them (gob gave each entry
		// its own array); the decoded command only validates them and sizes
		// the entry as Apply did.
		s.size = uint32((&Entry{Cursor: se.Cursor, Command: c, Err: e, Groups: se.Groups}).size())
		st.Entries[i] = s
		st.Bytes += int64(s.size)
	}
	for _, ci := range d.Conns {
		h := st.hub(ci.Hub)
		if _, dup := h.Conns[ci.ID]; dup {
			return fmt.Errorf("fsm: restore: connection %q of hub %q listed twice", ci.ID, ci.Hub)
		}
		cs := &connState{User: ci.User, Node: ci.Node, Opened: ci.Opened, History: ci.History}
		if ci.Base != ci.Opened || len(ci.BaseGroups) > 0 {
			cs.folded = &historyBase{Base: ci.Base, Groups: ci.BaseGroups}
		}
		if ack := (ackState{ClientSeq: ci.ClientSeq, AckSeq: ci.AckSeq, AckAt: ci.AckAt}); ack != (ackState{}) {
			cs.acks = &ack
		}
		h.Conns[ci.ID] = cs
		if ci.User != "" {
			// Not addUser: ids are unique (checked above), and its search
			// would make a user with many connections cost quadratic time.
			h.Users[ci.User] = append(h.Users[ci.User], ci.ID)
		}
		// Sorted and without repeats whatever wrote the snapshot: older
		// builds listed the groups in map order.
		if len(ci.Groups) > 0 {
			cs.Groups = slices.Compact(slices.Sorted(slices.Values(ci.Groups)))
		}
		for _, g := range cs.Groups {
			addTo(h.Groups, g, ci.ID)
		}
	}
	if len(d.Dedup) != len(d.DedupQ) {
		return fmt.Errorf("fsm: restore: dedup index mismatch")
	}
	st.DedupQ = d.DedupQ
	for i, it := range d.DedupQ {
		st.Dedup[it.ID] = d.Dedup[i]
		st.DedupQ[i].At = d.Dedup[i] // zero in a snapshot of an older build
	}
	st.dedupPeak = len(st.Dedup)
	m.mu.Lock()
	m.st = st
	m.evictLocked() // this node's limits may be smaller than the snapshotter's
	m.notifyLocked()
	m.mu.Unlock()
	return nil
}
