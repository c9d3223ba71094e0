package fsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// DedupWindow is how long (in command time) the FSM remembers command IDs.
// It is a constant, not a flag: every node must drop exactly the same
// duplicates or replicas diverge. It only has to outlast a submitter's
// retries (cluster caps its hold time well below it), and the ids it keeps
// cost memory in proportion to the publish rate.
const DedupWindow = 30 * time.Second

// MaxCommandAge bounds how far behind the newest applied command a command
// may be stamped and still be applied. Together with DedupWindow it makes
// retries exactly-once however late a copy reaches the log (a forward held
// by a deposed leader, an uncommitted entry a later leader commits): every
// copy carries the time a leader first accepted the command, so a copy is
// either young enough that the first one is still remembered, or refused.
const MaxCommandAge = DedupWindow / 2

// Sentinel errors. Apply reports per-command errors in Result.Err and keeps
// the command in the stream, so every node sees the same outcome.
var (
	ErrUnknownConnection = errors.New("unknown connection")
	ErrConnectionExists  = errors.New("connection already exists")
	ErrCursorTooOld      = errors.New("cursor expired: older than the message cache")
	// ErrNoEpoch means the stream has no epoch: the cluster-init command
	// that names the cluster is not applied yet. It is the one error for
	// "no cluster id yet": cluster and hub wrap it, callers match it with
	// errors.Is.
	ErrNoEpoch      = errors.New("no cluster id applied yet")
	ErrResumeDenied = errors.New("resume denied: the connection belongs to another user")
	// ErrExpired refuses a command stamped more than MaxCommandAge before
	// the newest applied one: a copy that late might no longer be known as
	// a duplicate, so it is not applied at all.
	ErrExpired = errors.New("command expired: it reached the log too late to be applied safely; it may or may not have been applied before")
	// ErrStaleSnapshot: Restore was given a snapshot older than what the
	// machine applied.
	ErrStaleSnapshot = errors.New("stale snapshot: older than what this node applied")
	// ErrOutOfOrder refuses a command whose Origin sequence number is past
	// the next one its connection expects (log format FormatOrdered): an
	// earlier command of the same origin has not been applied yet (it is
	// still on its way, or lost with a deposed leader). Nothing of it was
	// applied; the submitter sends it again once the earlier ones are
	// decided.
	ErrOutOfOrder = errors.New("command out of order: an earlier command of its connection is not applied yet; nothing was applied")
	// ErrRejected is what Apply returns (as the whole response, not per
	// command) for an entry of a known batch version that does not decode:
	// none of its commands was applied, on any replica.
	ErrRejected = errors.New("fsm: log entry rejected as malformed: none of its commands was applied")
)

// Config bounds the message cache. The limits are per node: a node with a
// bigger cache can serve older cursors, nothing else changes.
type Config struct {
	// CacheMaxEntries caps the number of cached commands.
	CacheMaxEntries int
	// CacheMaxBytes caps the estimated memory of cached commands.
	CacheMaxBytes int64
	// CacheMaxAge drops commands older than this, measured against the
	// newest command's time stamp (not the local clock).
	CacheMaxAge time.Duration
	// Logger receives the FSM's few log lines; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{
		CacheMaxEntries: 100_000,
		CacheMaxBytes:   64 << 20,
		CacheMaxAge:     10 * time.Minute,
	}
}

// Validate checks the limits.
func (c Config) Validate() error {
	if c.CacheMaxEntries < 1 {
		return fmt.Errorf("fsm: CacheMaxEntries (%d) must be at least 1", c.CacheMaxEntries)
	}
	if c.CacheMaxBytes < 1024 {
		return fmt.Errorf("fsm: CacheMaxBytes (%d) must be at least 1024", c.CacheMaxBytes)
	}
	if c.CacheMaxAge < time.Second {
		return fmt.Errorf("fsm: CacheMaxAge (%s) must be at least 1s", c.CacheMaxAge)
	}
	return nil
}

// Entry is one applied command as the stream serves it.
type Entry struct {
	Cursor Cursor
	Command
	// Err is the command's outcome (ErrUnknownConnection, ...); a command
	// with an error changed nothing and reaches nobody.
	Err error
	// Groups is, for a KindConnResume entry, the connection's groups at
	// this entry: where live delivery picks up after the replay.
	Groups []string
}

// Result is what Apply returns for each command of an entry; the submitter
// gets it through raft's ApplyFuture.Response() as []Result.
type Result struct {
	Cursor Cursor
	Err    error
	// Duplicate is set when the command's ID was applied before; Cursor is
	// then the cursor the first copy got.
	Duplicate bool
}

// ConnInfo describes a connection in the replicated registry.
type ConnInfo struct {
	ID     string
	Hub    string
	User   string
	Node   string
	Opened Cursor
	Groups []string
	// For stateful-reconnect connections: the highest client message
	// sequence number applied, and the last acknowledgement checkpoint (the
	// client had received AckSeq messages, the last at AckAt).
	ClientSeq uint64
	AckSeq    uint64
	AckAt     Cursor
}

// Machine is the raftplane FSM. Apply, ApplyBatch, Snapshot and Restore are
// called by raft from one goroutine; every read method may be called from
// any goroutine at any time.
type Machine struct {
	cfg Config
	log *slog.Logger

	mu      sync.RWMutex
	st      *state
	changed chan struct{} // closed and replaced after every apply or restore

	rejected atomic.Uint64 // malformed entries this process rejected
	newest   atomic.Int64  // st.Newest as of the last apply or restore
	// pins counts snapshots captured and not yet released: while any is,
	// eviction does not clear the cache slots they read (snapshot.go).
	pins atomic.Int32
	// scratch is where applies encode the commands they cache (under mu),
	// reused across calls; each cached command gets a copy of exactly its
	// length (not a slice of raft's l.Data, which would pin the whole
	// entry and raft's buffers).
	scratch []byte
}

// state is everything a snapshot carries; Restore swaps it whole.
type state struct {
	Epoch   string
	Secret  []byte
	Applied uint64 // last raft index seen, of any type
	Last    Cursor // cursor of the last command applied
	Floor   Cursor // the stream can be read from any cursor >= Floor
	Newest  int64  // largest command time stamp applied
	Format  uint32 // the log format every server knows (KindFormat); 0 means 1
	// EventsDone is the newest KindEventsDone: the leader has delivered
	// the connection events of the entries up to it.
	EventsDone Cursor

	Entries []slot // cached commands in cursor order
	Bytes   int64

	Hubs map[string]*hubState

	Dedup  map[string]Cursor
	DedupQ []dedupItem // in apply order, for eviction
	// dedupPeak is the most ids Dedup held since it was last built: a Go
	// map keeps the table of its peak after deletes, so evictLocked
	// rebuilds it once it holds a quarter of that (not replicated: only
	// memory depends on it).
	dedupPeak int

	// Digest chains every applied command (cursor, kind, ID, outcome), so
	// two replicas at the same Last applied the same commands in the same
	// order exactly when their digests match (the chaos suite compares it).
	Digest uint64
}

// slot is one cached command, kept encoded: a decoded Command is some 300
// bytes of string and slice headers plus its strings, an encoded one a few
// dozen bytes, and the cache holds every connection's open and joins for as
// long as CacheMaxAge (issue 17: the FSM's memory per idle connection).
// Since decodes the slots it returns, outside the lock.
type slot struct {
	Cursor Cursor
	Time   int64  // the command's, for CacheMaxAge
	cmd    []byte // EncodeCommand of the command as applied, exactly its length
	// user is a close's user, which the encoding does not carry (Apply sets
	// it from the registry; see Command.User).
	user   string
	groups []string // a resume's: Entry.Groups
	// size is Entry.size() at insert, so that CacheMaxBytes counts exactly
	// what it counted when the cache held decoded entries (and what a
	// replica of another version counts).
	size uint32
	err  uint8 // ErrorCode of the outcome
}

// entry decodes the slot back into the entry Apply cached. The bytes were
// encoded by this process or validated by Restore, so an error is a bug.
func (s *slot) entry() (Entry, error) {
	c, err := DecodeCommand(s.cmd)
	if err != nil {
		return Entry{}, fmt.Errorf("fsm: cached entry %s does not decode: %w", s.Cursor, err)
	}
	e, ok := ErrorFromCode(s.err)
	if !ok {
		return Entry{}, fmt.Errorf("fsm: cached entry %s has unknown outcome code %d", s.Cursor, s.err)
	}
	if c.Kind == KindConnClose {
		c.User = s.user
	}
	return Entry{Cursor: s.Cursor, Command: c, Err: e, Groups: s.groups}, nil
}

type hubState struct {
	Conns  map[string]*connState
	Groups map[string]map[string]struct{}
	// Users: a user's connections in a slice, not a set, since a user has
	// one or a few and a map per user costs each connection hundreds of
	// bytes on every node.
	Users map[string][]string
}

type connState struct {
	User   string
	Node   string
	Opened Cursor
	// Groups is the connection's groups, sorted, nil for none: a slice,
	// not a set, since a connection is in one or a few groups and a map
	// costs each connection some two hundred bytes on every node (issue
	// 17). A binary search keeps a connection in thousands of groups
	// cheap: O(log n) to look one up, a copy of the tail to change one.
	Groups []string
	// History records the membership changes after the base (base), so
	// the groups at any cursor >= the base can be rebuilt (cursor resume).
	History []groupChange
	// folded holds the base once the history has folded its older part
	// into it; nil before, when the base is Opened, with no groups. acks is
	// nil until the connection's first client message or acknowledgement
	// (stateful reconnect). Both are pointers because most connections
	// need neither, and every byte of a connState is on every node, for
	// every connection, for its whole life (issue 17).
	folded *historyBase
	acks   *ackState
}

// historyBase is a connection's membership folded up to Base: the groups
// it had right after Base.
type historyBase struct {
	Base   Cursor
	Groups []string
}

// ackState is a stateful-reconnect connection's progress: see ConnInfo.
type ackState struct {
	ClientSeq uint64
	AckSeq    uint64
	AckAt     Cursor
}

// base returns the cursor the connection's history starts after, and its
// groups there.
func (cs *connState) base() (Cursor, []string) {
	if cs.folded == nil {
		return cs.Opened, nil
	}
	return cs.folded.Base, cs.folded.Groups
}

// acked returns the connection's progress, zero for none.
func (cs *connState) acked() ackState {
	if cs.acks == nil {
		return ackState{}
	}
	return *cs.acks
}

// progress returns the connection's progress to change, allocating it on
// the first change.
func (cs *connState) progress() *ackState {
	if cs.acks == nil {
		cs.acks = &ackState{}
	}
	return cs.acks
}

// groupChange is one effective join or leave of a connection.
type groupChange struct {
	Cursor Cursor
	Group  string
	Join   bool
}

// maxHistory bounds a connection's membership history; older changes are
// folded into its base (a resume from before the base is refused).
const maxHistory = 512

type dedupItem struct {
	ID   string
	Time int64
	// At is the command's cursor (also in Dedup[ID]), so a snapshot reads
	// it without the map. Snapshots written before it was added leave it
	// zero; Restore reads the cursors from the snapshot's Dedup list.
	At Cursor
}

func newState() *state {
	return &state{Hubs: map[string]*hubState{}, Dedup: map[string]Cursor{}}
}

// New returns an empty machine.
func New(cfg Config) (*Machine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Machine{cfg: cfg, log: lg, st: newState(), changed: make(chan struct{})}, nil
}

var _ raft.BatchingFSM = (*Machine)(nil)

// Apply applies one committed log entry.
func (m *Machine) Apply(l *raft.Log) interface{} {
	return m.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed entries under one lock and one wake-up.
func (m *Machine) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	m.mu.Lock()
	for i, l := range logs {
		out[i] = m.applyLocked(l)
		// Evict after every entry, not once per batch: raft groups entries
		// into batches differently on each node, and the dedup window must
		// forget IDs at the same entry everywhere.
		m.evictLocked()
	}
	if cap(m.scratch) > maxScratch {
		m.scratch = nil // one huge command does not keep its size
	}
	m.notifyLocked()
	m.mu.Unlock()
	return out
}

// maxScratch bounds the encoding buffer ApplyBatch keeps between calls.
const maxScratch = 64 << 10

func (m *Machine) applyLocked(l *raft.Log) interface{} {
	st := m.st
	if l.Index > st.Applied {
		st.Applied = l.Index
	}
	if l.Type != raft.LogCommand {
		return nil
	}
	cmds, err := DecodeBatch(l.Data)
	if errors.Is(err, ErrUnknownFormat) {
		// A newer node wrote it: skipping it would let this node's state
		// drift from the nodes that know the format, so stop here (again
		// after every restart) until this node runs a version that knows it.
		panic(fmt.Sprintf("fsm: entry %d (term %d) is in a log format this build does not know: %v; "+
			"upgrade raftplane on this node to apply the log", l.Index, l.Term, err))
	}
	if err != nil {
		// A malformed entry of a known version: every replica decodes the
		// same bytes to the same error, so every replica rejects it whole
		// and stays equal. Nothing but Applied changes, not the digest
		// either (like a configuration entry, it holds no command).
		m.rejected.Add(1)
		m.log.Error("rejected a malformed log entry; none of its commands was applied",
			"index", l.Index, "term", l.Term, "bytes", len(l.Data), "err", err)
		return fmt.Errorf("%w: entry %d: %w", ErrRejected, l.Index, err)
	}
	res := make([]Result, len(cmds))
	groups := groupEnds(cmds)
	for off := 0; off < len(cmds); off++ {
		c := &cmds[off]
		cur := Cursor{Index: l.Index, Offset: uint32(off)}
		if c.Kind == KindFormat {
			// Not cached, digested or deduplicated: a build that skips it
			// (an older one) stays equal to this one.
			st.Format = max(st.Format, c.Format)
			res[off] = Result{Cursor: cur}
			continue
		}
		if c.Kind >= KindIgnorable {
			m.log.Warn("skipping unknown ignorable command", "kind", c.Kind, "cursor", cur)
			res[off] = Result{Cursor: cur}
			continue
		}
		end, grouped := groups[off]
		if !grouped {
			end = off
		}
		// An invoke group is decided by its invoke, before any of it
		// applies: its effects carry no id or origin, and do not change
		// what the decision reads.
		t := &cmds[end]
		if t.Time > st.Newest {
			st.Newest = t.Time
		}
		if r, skip := st.dedup(t, Cursor{Index: l.Index, Offset: uint32(end)}); skip {
			skipped(res, l.Index, off, end, r)
		} else {
			m.scratch = st.applyRange(cmds, l.Index, off, end, res, m.scratch)
		}
		off = end
	}
	return res
}

// skipped fills the results of commands off to end of entry index, a group
// skipped as a whole with outcome r (a duplicate points at its first
// copy's group, which has the same shape).
func skipped(res []Result, index uint64, off, end int, r Result) {
	for k := off; k <= end; k++ {
		back := uint32(end - k)
		rk := Result{Cursor: Cursor{Index: index, Offset: uint32(k)}, Duplicate: r.Duplicate, Err: r.Err}
		if r.Cursor.Offset >= back {
			rk.Cursor = Cursor{Index: r.Cursor.Index, Offset: r.Cursor.Offset - back}
		}
		res[k] = rk
	}
}

// applyRange applies commands off to end of entry index, in order: each
// changes the registry, joins the digest and the cache, and has its result.
// scratch is a buffer to encode in; it returns it, grown.
func (st *state) applyRange(cmds []Command, index uint64, off, end int, res []Result, scratch []byte) []byte {
	for k := off; k <= end; k++ {
		c := &cmds[k]
		if c.Time > st.Newest {
			st.Newest = c.Time
		}
		e := Entry{Cursor: Cursor{Index: index, Offset: uint32(k)}, Command: *c}
		e.Err = st.apply(&e)
		st.Digest = digest(st.Digest, &e)
		scratch = appendCommand(scratch[:0], &e.Command)
		s := slot{Cursor: e.Cursor, Time: e.Time, cmd: append(make([]byte, 0, len(scratch)), scratch...),
			groups: e.Groups, size: uint32(e.size()), err: ErrorCode(e.Err)}
		if e.Kind == KindConnClose {
			s.user = e.User
		}
		st.Entries = append(st.Entries, s)
		st.Bytes += int64(s.size)
		st.Last = e.Cursor
		res[k] = Result{Cursor: e.Cursor, Err: e.Err}
	}
	return scratch
}

// dedup decides whether command c, at cursor cur, is skipped: a duplicate
// of a command applied before (by its ID within DedupWindow, or by its
// Origin's sequence number, with no time limit: a client message sent again
// after a reconnect, possibly to another node) or expired. It records c
// when it is not.
func (st *state) dedup(c *Command, cur Cursor) (Result, bool) {
	if st.Format >= FormatOrdered && st.outOfOrder(c) {
		return Result{Cursor: cur, Err: ErrOutOfOrder}, true
	}
	if c.ID != "" && !skipDedup {
		if first, ok := st.Dedup[c.ID]; ok {
			return Result{Cursor: first, Duplicate: true}, true
		}
		if olderThan(c.Time, st.Newest, MaxCommandAge.Nanoseconds()) {
			return Result{Cursor: cur, Err: ErrExpired}, true
		}
		st.Dedup[c.ID] = cur
		st.dedupPeak = max(st.dedupPeak, len(st.Dedup))
		st.DedupQ = append(st.DedupQ, dedupItem{ID: c.ID, Time: c.Time, At: cur})
	}
	if !c.Origin.IsZero() {
		if cs, ok := st.conn(c.Hub, c.Origin.Conn); ok {
			if c.Origin.Seq <= cs.acked().ClientSeq && !skipDedup {
				return Result{Cursor: cur, Duplicate: true}, true
			}
			cs.progress().ClientSeq = c.Origin.Seq
		}
	}
	return Result{}, false
}

// outOfOrder reports a command of a known connection whose Origin sequence
// number is past the next one expected, and that is not a copy of one
// applied before (that is a duplicate, whatever its number). It records
// nothing: the command will come again, in its turn.
func (st *state) outOfOrder(c *Command) bool {
	if c.Origin.IsZero() {
		return false
	}
	cs, ok := st.conn(c.Hub, c.Origin.Conn)
	if !ok || c.Origin.Seq <= cs.acked().ClientSeq+1 {
		return false
	}
	if c.ID != "" {
		if _, dup := st.Dedup[c.ID]; dup {
			return false
		}
	}
	return true
}

// apply changes the registry for one command and returns its outcome.
func (st *state) apply(e *Entry) error {
	c := &e.Command
	switch c.Kind {
	case KindClusterInit:
		if st.Epoch == "" {
			st.Epoch = c.ClusterID
			st.Secret = c.Secret
		}
	case KindPublish:
		if c.Audience == AudienceConnection {
			if _, ok := st.conn(c.Hub, c.Key); !ok {
				return ErrUnknownConnection
			}
		}
	case KindConnOpen:
		return st.applyOpen(e)
	case KindConnClose:
		return st.applyClose(c)
	case KindGroupJoin, KindGroupLeave:
		return st.applyGroupChange(e)
	case KindReject:
		// It only carries the refusal to its origin.
	case KindInvoke:
		// Its effects precede it; it carries the result to its origin.
	case KindEventsDone:
		if st.EventsDone.Less(c.From) {
			st.EventsDone = c.From
		}
	case KindConnAck:
		cs, ok := st.conn(c.Hub, c.Conn)
		if !ok {
			return ErrUnknownConnection
		}
		if c.AckSeq > cs.acked().AckSeq {
			p := cs.progress()
			p.AckSeq, p.AckAt = c.AckSeq, c.From
		}
	case KindConnResume:
		cs, ok := st.conn(c.Hub, c.Conn)
		if !ok {
			return ErrUnknownConnection
		}
		if cs.User != c.User {
			return ErrResumeDenied
		}
		cs.Node = c.Node
		e.Groups = cloneGroups(cs.Groups)
	}
	return nil
}

// applyOpen registers a new connection.
func (st *state) applyOpen(e *Entry) error {
	c := &e.Command
	h := st.hub(c.Hub)
	if _, ok := h.Conns[c.Conn]; ok {
		return ErrConnectionExists
	}
	// Groups stays nil until the first join: most connections of a large
	// hub are in few groups or none.
	h.Conns[c.Conn] = &connState{User: c.User, Node: c.Node, Opened: e.Cursor}
	if c.User != "" {
		addUser(h.Users, c.User, c.Conn)
	}
	return nil
}

// applyClose forgets a connection, its groups and its user; the command
// is given the user, since the registry forgets it here.
func (st *state) applyClose(c *Command) error {
	h := st.Hubs[c.Hub]
	if h == nil || h.Conns[c.Conn] == nil {
		return ErrUnknownConnection
	}
	cs := h.Conns[c.Conn]
	// The entry says whose connection ended (the disconnected event needs
	// it).
	c.User = cs.User
	for _, g := range cs.Groups {
		removeFrom(h.Groups, g, c.Conn)
	}
	if cs.User != "" {
		removeUser(h.Users, cs.User, c.Conn)
	}
	delete(h.Conns, c.Conn)
	if len(h.Conns) == 0 {
		delete(st.Hubs, c.Hub)
	}
	return nil
}

// applyGroupChange applies a join or a leave, recording it in the
// connection's membership history when it changes anything.
func (st *state) applyGroupChange(e *Entry) error {
	c := &e.Command
	cs, ok := st.conn(c.Hub, c.Conn)
	if !ok {
		return ErrUnknownConnection
	}
	h := st.Hubs[c.Hub]
	join := c.Kind == KindGroupJoin
	i, member := slices.BinarySearch(cs.Groups, c.Group)
	if join {
		if !member {
			cs.Groups = slices.Insert(cs.Groups, i, c.Group)
		}
		addTo(h.Groups, c.Group, c.Conn)
	} else {
		if member {
			cs.Groups = slices.Delete(cs.Groups, i, i+1)
			if len(cs.Groups) == 0 {
				cs.Groups = nil // drop the array
			}
		}
		removeFrom(h.Groups, c.Group, c.Conn)
	}
	if member != join {
		cs.record(groupChange{Cursor: e.Cursor, Group: c.Group, Join: join})
	}
	return nil
}

// record appends a membership change, folding the oldest into the base
// when the history is full.
func (cs *connState) record(ch groupChange) {
	cs.History = append(cs.History, ch)
	if len(cs.History) <= maxHistory {
		return
	}
	fold := len(cs.History) - maxHistory/2
	set := map[string]struct{}{}
	_, baseGroups := cs.base()
	for _, g := range baseGroups {
		set[g] = struct{}{}
	}
	for _, h := range cs.History[:fold] {
		if h.Join {
			set[h.Group] = struct{}{}
		} else {
			delete(set, h.Group)
		}
	}
	cs.folded = &historyBase{Base: cs.History[fold-1].Cursor, Groups: sortedKeys(set)}
	cs.History = append([]groupChange(nil), cs.History[fold:]...)
}

// groupsAt rebuilds the groups the connection had right after cursor c.
func (cs *connState) groupsAt(c Cursor) ([]string, bool) {
	base, baseGroups := cs.base()
	if c.Less(base) {
		return nil, false
	}
	set := map[string]struct{}{}
	for _, g := range baseGroups {
		set[g] = struct{}{}
	}
	for _, h := range cs.History {
		if c.Less(h.Cursor) {
			break
		}
		if h.Join {
			set[h.Group] = struct{}{}
		} else {
			delete(set, h.Group)
		}
	}
	out := sortedKeys(set)
	if out == nil {
		out = []string{}
	}
	return out, true
}

func (st *state) hub(name string) *hubState {
	h := st.Hubs[name]
	if h == nil {
		h = &hubState{
			Conns:  map[string]*connState{},
			Groups: map[string]map[string]struct{}{},
			Users:  map[string][]string{},
		}
		st.Hubs[name] = h
	}
	return h
}

func (st *state) conn(hub, id string) (*connState, bool) {
	h := st.Hubs[hub]
	if h == nil {
		return nil, false
	}
	c, ok := h.Conns[id]
	return c, ok
}

func addTo(m map[string]map[string]struct{}, key, conn string) {
	s := m[key]
	if s == nil {
		s = map[string]struct{}{}
		m[key] = s
	}
	s[conn] = struct{}{}
}

func addUser(m map[string][]string, user, conn string) {
	if !slices.Contains(m[user], conn) {
		m[user] = append(m[user], conn)
	}
}

func removeUser(m map[string][]string, user, conn string) {
	cs := m[user]
	if i := slices.Index(cs, conn); i >= 0 {
		cs[i] = cs[len(cs)-1]
		cs = cs[:len(cs)-1]
	}
	if len(cs) == 0 {
		delete(m, user)
	} else {
		m[user] = cs
	}
}

func removeFrom(m map[string]map[string]struct{}, key, conn string) {
	if s := m[key]; s != nil {
		delete(s, conn)
		if len(s) == 0 {
			delete(m, key)
		}
	}
}

func (e *Entry) size() int { return 16 + e.Command.size() }

// evictLocked applies the cache limits and the dedup window.
func (m *Machine) evictLocked() {
	st := m.st
	maxAge := m.cfg.CacheMaxAge.Nanoseconds()
	n := 0
	for n < len(st.Entries) {
		s := &st.Entries[n]
		over := len(st.Entries)-n > m.cfg.CacheMaxEntries || st.Bytes > m.cfg.CacheMaxBytes ||
			olderThan(s.Time, st.Newest, maxAge)
		if !over {
			break
		}
		st.Bytes -= int64(s.size)
		st.Floor = s.Cursor
		n++
	}
	if n > 0 {
		// Clear the evicted slots so their commands are freed, then
		// reslice: append drops the old array when it next grows, so the
		// cache is not copied on every eviction. Not while a snapshot is
		// pinned: it reads these slots, in Persist, without the lock.
		if m.pins.Load() == 0 {
			clear(st.Entries[:n])
		}
		st.Entries = st.Entries[n:]
	}
	window := DedupWindow.Nanoseconds()
	k := 0
	for k < len(st.DedupQ) && olderThan(st.DedupQ[k].Time, st.Newest, window) {
		delete(st.Dedup, st.DedupQ[k].ID)
		k++
	}
	if k > 0 && k >= len(st.DedupQ)/2 {
		// A new array (nil for none): a slice of the old one, even an
		// empty one, would keep it and the ids it holds alive.
		st.DedupQ = append([]dedupItem(nil), st.DedupQ[k:]...)
	} else if k > 0 {
		st.DedupQ = st.DedupQ[k:]
	}
	if k > 0 && st.dedupPeak >= minDedupRebuild && len(st.Dedup) <= st.dedupPeak/4 {
		st.Dedup = rebuiltDedup(st.Dedup)
		st.dedupPeak = len(st.Dedup)
	}
}

// minDedupRebuild is the smallest peak of the dedup index worth
// rebuilding: below it, its table costs less than the churn.
const minDedupRebuild = 1024

// rebuiltDedup copies the dedup index into a map of its own size: after a
// burst of commands (10,000 connections opening) has left the window, the
// old map still holds its peak's table, some hundred bytes per id, for as
// long as the node runs. The rebuild costs O(peak), once per shrink to a
// quarter. The contents are the same, so replicas stay equal.
func rebuiltDedup(old map[string]Cursor) map[string]Cursor {
	m := make(map[string]Cursor, len(old))
	for id, c := range old {
		m[id] = c
	}
	return m
}

// olderThan reports whether stamp t is more than d nanoseconds before
// newest, without the overflow of newest-t (stamps are the submitters'
// numbers: a wrapped difference would make an ancient stamp look new).
func olderThan(t, newest, d int64) bool {
	return t < newest && uint64(newest)-uint64(t) > uint64(d)
}

func (m *Machine) notifyLocked() {
	m.newest.Store(m.st.Newest)
	close(m.changed)
	m.changed = make(chan struct{})
}

// Changed returns a channel that is closed at the next apply or restore.
// Read the stream, then wait on the channel taken before the read.
func (m *Machine) Changed() <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.changed
}

// Since returns up to max cached entries after cursor, in order. It returns
// ErrCursorTooOld when entries after cursor have left the cache.
func (m *Machine) Since(after Cursor, max int) ([]Entry, error) {
	slots, err := m.since(after, max)
	if len(slots) == 0 {
		return nil, err
	}
	// Decoded without the lock: an Apply does not wait for it.
	out := make([]Entry, len(slots))
	for i := range slots {
		if out[i], err = slots[i].entry(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// since copies, under the read lock, the slots Since returns.
func (m *Machine) since(after Cursor, max int) ([]slot, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	st := m.st
	if after.Less(st.Floor) {
		return nil, fmt.Errorf("%w: cursor %s, oldest available %s", ErrCursorTooOld, after, st.Floor)
	}
	i := sort.Search(len(st.Entries), func(i int) bool { return after.Less(st.Entries[i].Cursor) })
	j := len(st.Entries)
	if max > 0 && j-i > max {
		j = i + max
	}
	if i == j {
		return nil, nil
	}
	return append([]slot(nil), st.Entries[i:j]...), nil
}

// Wait blocks until the command at cursor c has been applied on this node, or
// ctx ends.
func (m *Machine) Wait(ctx context.Context, c Cursor) error {
	for {
		m.mu.RLock()
		// Applied covers a cursor whose entry held no cached command
		// (ignorable kinds only).
		done := !m.st.Last.Less(c) || m.st.Applied >= c.Index
		ch := m.changed
		m.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Secret returns the cluster's shared secret from the cluster-init entry,
// or nil before it is applied. Callers must not modify it.
func (m *Machine) Secret() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Secret
}

// Newest returns the largest command time stamp applied (Unix nanoseconds;
// 0 before any). A leader stamps no command below it, so that time in the
// log never goes backward when leadership moves to a node whose clock is
// behind.
//
// Every Publish reads it, so it is an atomic copy published after each apply
// and restore: submitters never wait on the lock Apply holds.
func (m *Machine) Newest() int64 { return m.newest.Load() }

// Format returns the log format every server of the cluster knows, as the
// log says (KindFormat): 1 until a leader has recorded more. A command of a
// newer format may be written only when Format is at least its format.
func (m *Machine) Format() uint32 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return max(m.st.Format, 1)
}

// EventsDone returns the newest KindEventsDone cursor: how far the leader
// has delivered the connection events the log carries (zero: never).
func (m *Machine) EventsDone() Cursor {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.EventsDone
}

// Rejected returns how many malformed log entries this machine has rejected
// since it was created (a per-process count, not replicated: a node that
// installed a snapshot past such an entry never saw it).
func (m *Machine) Rejected() uint64 { return m.rejected.Load() }

// Epoch returns the cluster id that prefixes every cursor, or "" before the
// cluster-init command is applied.
func (m *Machine) Epoch() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Epoch
}

// Position describes the readable window of the stream.
type Position struct {
	Epoch   string
	Applied uint64 // last raft index applied (any entry type)
	First   Cursor // first cached command (zero if none)
	Floor   Cursor // resumable from any cursor >= Floor
	Last    Cursor // last command applied
	Entries int
	Bytes   int64
	// Digest identifies the sequence of commands applied up to Last.
	Digest uint64
}

// Position returns the current window.
func (m *Machine) Position() Position {
	m.mu.RLock()
	defer m.mu.RUnlock()
	st := m.st
	p := Position{Epoch: st.Epoch, Applied: st.Applied, Floor: st.Floor, Last: st.Last,
		Entries: len(st.Entries), Bytes: st.Bytes, Digest: st.Digest}
	if len(st.Entries) > 0 {
		p.First = st.Entries[0].Cursor
	}
	return p
}

// Connection looks a connection up in the registry.
func (m *Machine) Connection(hub, id string) (ConnInfo, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	cs, ok := m.st.conn(hub, id)
	if !ok {
		return ConnInfo{}, false
	}
	ci := ConnInfo{ID: id, Hub: hub, User: cs.User, Node: cs.Node, Opened: cs.Opened,
		Groups: cloneGroups(cs.Groups)}
	ack := cs.acked()
	ci.ClientSeq, ci.AckSeq, ci.AckAt = ack.ClientSeq, ack.AckSeq, ack.AckAt
	return ci, true
}

// GroupConnections returns the sorted ids of the connections in a group.
func (m *Machine) GroupConnections(hub, group string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if h := m.st.Hubs[hub]; h != nil {
		return sortedKeys(h.Groups[group])
	}
	return nil
}

// UserConnections returns the sorted ids of a user's connections.
func (m *Machine) UserConnections(hub, user string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if h := m.st.Hubs[hub]; h != nil {
		return slices.Sorted(slices.Values(h.Users[user]))
	}
	return nil
}

// ConnectionCount returns the number of open connections in the cluster.
func (m *Machine) ConnectionCount() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for _, h := range m.st.Hubs {
		n += len(h.Conns)
	}
	return n
}

// cloneGroups copies a connection's sorted groups for a caller to keep
// (applies change the registry's slice in place); nil for none.
func cloneGroups(gs []string) []string {
	if len(gs) == 0 {
		return nil
	}
	return slices.Clone(gs)
}

func sortedKeys(s map[string]struct{}) []string {
	if len(s) == 0 {
		return nil
	}
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ConnectionsOn returns the connections whose transport is held by node,
// sorted by hub and id.
func (m *Machine) ConnectionsOn(node string) []ConnInfo {
	m.mu.RLock()
	defer m.mu.RUnlock()
	// Counted first and made to size: a node lists its own many thousands
	// of connections once after a restart (the hub's reapOwn), and doubling
	// growth would leave several times the list as garbage.
	n := 0
	for _, h := range m.st.Hubs {
		for _, cs := range h.Conns {
			if cs.Node == node {
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]ConnInfo, 0, n)
	for hubName, h := range m.st.Hubs {
		for id, cs := range h.Conns {
			if cs.Node == node {
				out = append(out, ConnInfo{ID: id, Hub: hubName, User: cs.User, Node: cs.Node, Opened: cs.Opened})
			}
		}
	}
	slices.SortFunc(out, func(a, b ConnInfo) int {
		if c := strings.Compare(a.Hub, b.Hub); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// ConnectionNodes returns the ids of the nodes that hold at least one
// connection, with their connection counts.
func (m *Machine) ConnectionNodes() map[string]int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := map[string]int{}
	for _, h := range m.st.Hubs {
		for _, cs := range h.Conns {
			out[cs.Node]++
		}
	}
	return out
}

// ErrHistoryTooOld is returned by GroupsAt for a cursor before what the
// connection's membership history still covers.
var ErrHistoryTooOld = errors.New("cursor expired: older than the connection's membership history")

// GroupsAt returns the groups connection id of hub had right after cursor
// c, and the connection's user: what a resume from c starts with.
func (m *Machine) GroupsAt(hub, id string, c Cursor) (groups []string, user string, err error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	cs, ok := m.st.conn(hub, id)
	if !ok {
		return nil, "", ErrUnknownConnection
	}
	if c.Less(cs.Opened) {
		// Before the connection existed it had no groups; the replay starts
		// at its opening, which must still be cached.
		c = cs.Opened
	}
	g, ok := cs.groupsAt(c)
	if !ok {
		base, _ := cs.base()
		return nil, "", fmt.Errorf("%w (history starts at %s)", ErrHistoryTooOld, base)
	}
	return g, cs.User, nil
}
