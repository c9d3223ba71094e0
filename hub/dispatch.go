package hub

import (
	"context"
	"errors"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

// localHub indexes this node's attached connections of one hub.
type localHub struct {
	conns  map[string]*conn
	groups map[string]map[*conn]struct{}
	// users: a slice, not a set, since a user has one or a few
	// connections and a map per user would cost each connection hundreds
	// of bytes.
	users map[string][]*conn
}

// dispatchBatch is how many entries the dispatcher reads at a time.
const dispatchBatch = 1024

// dispatch reads every applied entry in order and delivers it to the local
// connections it addresses. Because group joins, connection opens and closes
// go through the same stream, each connection receives exactly the messages
// addressed to it at each position of the log.
func (s *Server) dispatch(from fsm.Cursor) {
	defer s.wg.Done()
	s.dispatched(from) // stats.go: the dispatcher's lag counts from where it starts
	pos := from
	var frame []byte
	for {
		changed := s.stream.Changed()
		entries, err := s.stream.Since(pos, dispatchBatch)
		if errors.Is(err, fsm.ErrCursorTooOld) {
			// Only possible if the dispatcher stalls longer than the cache
			// window (or a snapshot install jumped past it): every local
			// connection may have missed messages, so all must reconnect.
			s.log.Error("dispatcher fell behind the cache; closing every local connection", "err", err)
			s.closeAllLocal("Connection closed: the server fell behind; reconnect.")
			pos = s.stream.Position().Last
			continue
		}
		if err != nil {
			s.log.Error("reading stream", "err", err)
			select {
			case <-s.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if len(entries) == 0 {
			select {
			case <-s.stop:
				return
			case <-changed:
			}
			continue
		}
		epoch := s.stream.Epoch()
		for i := range entries {
			frame = s.deliver(&entries[i], epoch, frame[:0])
		}
		s.kickTouched()
		s.stats.dispatchedBatch(entries) // stats.go
		pos = entries[len(entries)-1].Cursor
		s.dispatched(pos)
	}
}

// enqueueLater queues a frame on c without starting its writer; the
// dispatcher starts the writers of every connection it queued on at the
// end of the batch (kickTouched), so a connection gets what a batch
// brings it in one write rather than a write per entry.
func (s *Server) enqueueLater(c *conn, frame []byte, at fsm.Cursor) {
	if c.enqueueKick(frame, at, false) && !c.touched {
		c.touched = true
		s.touched = append(s.touched, c)
	}
}

// kickTouched starts the writers enqueueLater left for the end of the batch.
func (s *Server) kickTouched() {
	if len(s.touched) == 0 {
		return
	}
	now := time.Now()
	for i, c := range s.touched {
		c.touched = false
		c.mu.Lock()
		if c.handedAt.IsZero() {
			c.handedAt = now
		}
		c.kickLocked()
		c.mu.Unlock()
		s.touched[i] = nil
	}
	s.touched = s.touched[:0]
}

// dispatched records that every entry up to pos has been queued on its
// local recipients and wakes whoever waits for it.
func (s *Server) dispatched(pos fsm.Cursor) {
	s.dispMu.Lock()
	s.dispPos = pos
	if s.dispCh != nil {
		close(s.dispCh)
		s.dispCh = nil // the next waiter makes one: most dispatches have none
	}
	s.dispMu.Unlock()
}

// isDispatched reports whether the dispatcher has queued everything up to c.
func (s *Server) isDispatched(c fsm.Cursor) bool {
	s.dispMu.Lock()
	defer s.dispMu.Unlock()
	return !s.dispPos.Less(c)
}

// waitDispatched waits until the dispatcher has queued everything up to c,
// so that a Completion carrying cursor c follows the message at c on the
// caller's own connection.
func (s *Server) waitDispatched(ctx context.Context, c fsm.Cursor) {
	for {
		s.dispMu.Lock()
		done := !s.dispPos.Less(c)
		if !done && s.dispCh == nil {
			s.dispCh = make(chan struct{})
		}
		ch := s.dispCh
		s.dispMu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		}
	}
}

func (s *Server) localHub(name string, create bool) *localHub {
	h := s.idx[name]
	if h == nil && create {
		h = &localHub{conns: map[string]*conn{}, groups: map[string]map[*conn]struct{}{}, users: map[string][]*conn{}}
		s.idx[name] = h
	}
	return h
}

// deliver applies one entry to the local index or queues it on recipients,
// then the Completion it owes a stateful-reconnect connection (after the
// message itself, when the connection is among the recipients). scratch
// is reused between calls.
func (s *Server) deliver(e *fsm.Entry, epoch string, scratch []byte) []byte {
	scratch = s.deliverEntry(e, epoch, scratch)
	if !e.Origin.IsZero() && e.Origin.InvocationID != "" {
		if h := s.localHub(e.Hub, false); h != nil {
			if c := h.conns[e.Origin.Conn]; c != nil && c.sr != nil {
				s.enqueueLater(c, completionFor(c.proto, e, epoch), e.Cursor)
			}
		}
	}
	return scratch
}

// deliverEntry applies one entry to the local index or queues it on
// recipients. The frame given to connections is a fresh copy shared by all
// of them.
func (s *Server) deliverEntry(e *fsm.Entry, epoch string, scratch []byte) []byte {
	if e.Err != nil {
		return scratch
	}
	switch e.Kind {
	case fsm.KindConnOpen:
		s.attachOpened(e)
	case fsm.KindConnClose:
		s.detachClosed(e)
	case fsm.KindConnResume:
		s.attachResumed(e)
	case fsm.KindGroupJoin, fsm.KindGroupLeave:
		s.changeGroup(e)
	case fsm.KindPublish:
		return s.deliverPublish(e, epoch, scratch)
	}
	return scratch
}

// attachOpened indexes a connection of this node whose ConnOpen applied:
// from here on it receives what the log addresses to it.
func (s *Server) attachOpened(e *fsm.Entry) {
	if e.Node != s.cfg.NodeID {
		return
	}
	s.mu.Lock()
	c := s.conns[e.Conn]
	s.mu.Unlock()
	if c == nil || c.hub != e.Hub || e.ID != c.openID {
		return
	}
	s.localHub(e.Hub, true).attach(c)
	c.fire(&c.attached)
}

// detachClosed unindexes a connection the log closed and ends it, if this
// node holds it.
func (s *Server) detachClosed(e *fsm.Entry) {
	h, c := s.held(e.Hub, e.Conn)
	if c == nil {
		return
	}
	s.unindex(h, c)
	// A close this connection did not ask for (REST DELETE): end it.
	c.close(disconnect{reason: "Connection closed by the server: " + e.Reason, flush: true})
}

// attachResumed moves a resumed connection to its new transport: an
// earlier transport of it on this node ends, and the one that published
// this resume is indexed with the groups the entry carries.
func (s *Server) attachResumed(e *fsm.Entry) {
	s.mu.Lock()
	c := s.conns[e.Conn]
	s.mu.Unlock()
	ours := c != nil && c.hub == e.Hub && c.resume != nil && e.ID == c.openID
	if e.Node == s.cfg.NodeID && !ours {
		// A resume an earlier transport of it published here that was
		// applied late: the current transport stays as it is.
		return
	}
	if h := s.localHub(e.Hub, false); h != nil {
		if old := h.conns[e.Conn]; old != nil {
			// Its earlier transport on this node is done with.
			s.unindex(h, old)
			old.close(disconnect{reason: "Connection resumed on another transport.", cause: endMoved})
		}
	}
	if !ours {
		return
	}
	h := s.localHub(e.Hub, true)
	h.attach(c)
	for _, g := range e.Groups {
		h.join(c, g)
	}
	c.fire(&c.attached)
}

// changeGroup applies a join or leave of a connection this node holds.
func (s *Server) changeGroup(e *fsm.Entry) {
	h, c := s.held(e.Hub, e.Conn)
	if c == nil {
		return
	}
	if e.Kind == fsm.KindGroupJoin {
		h.join(c, e.Group)
		return
	}
	removeConn(h.groups, e.Group, c)
	c.groups.remove(e.Group)
}

// deliverPublish queues a publish on its recipients on this node, encoded
// once per protocol.
func (s *Server) deliverPublish(e *fsm.Entry, epoch string, scratch []byte) []byte {
	h := s.localHub(e.Hub, false)
	if h == nil {
		return scratch
	}
	// One encoding per protocol, with and without the cursor header: [0]
	// JSON, [1] MessagePack (binary), +2 without headers (cursorHeader).
	var frames [4][]byte
	send := func(c *conn) {
		for _, x := range e.Exclude {
			if x == c.id {
				return
			}
		}
		k := 0
		if c.proto.binary() {
			k = 1
		}
		if c.noHeaders {
			k += 2
		}
		if frames[k] == nil {
			// Encoded once per kind, for every recipient on this node (the
			// cursor too: formatting it per recipient would allocate per
			// delivery).
			scratch = c.proto.appendInvocation(scratch[:0], e.Target, e.Args, c.cursorHeader(e.Cursor, epoch))
			frames[k] = append([]byte(nil), scratch...)
		}
		s.enqueueLater(c, frames[k], e.Cursor)
	}
	switch e.Audience {
	case fsm.AudienceAll:
		for _, c := range h.conns {
			send(c)
		}
	case fsm.AudienceGroup:
		for c := range h.groups[e.Key] {
			send(c)
		}
	case fsm.AudienceUser:
		for _, c := range h.users[e.Key] {
			send(c)
		}
	case fsm.AudienceConnection:
		if c := h.conns[e.Key]; c != nil {
			send(c)
		}
	}
	return scratch
}

// held returns the local index of hub and its connection id, or nils when
// this node does not hold that connection. Only the dispatcher calls it.
func (s *Server) held(hub, id string) (*localHub, *conn) {
	h := s.localHub(hub, false)
	if h == nil {
		return nil, nil
	}
	c := h.conns[id]
	if c == nil {
		return nil, nil
	}
	return h, c
}

// attach indexes c under its id and user.
func (h *localHub) attach(c *conn) {
	h.conns[c.id] = c
	if c.user != "" {
		addUserConn(h.users, c.user, c)
	}
}

// join indexes c in group g.
func (h *localHub) join(c *conn, g string) {
	addConn(h.groups, g, c)
	c.groups.add(g)
}

// unindex removes a connection from the local index; the log no longer
// routes anything to it through this node.
func (s *Server) unindex(h *localHub, c *conn) {
	c.removed.Store(true)
	delete(h.conns, c.id)
	for g := range c.groups.all() {
		removeConn(h.groups, g, c)
	}
	c.groups = groupSet{}
	if c.user != "" {
		removeUserConn(h.users, c.user, c)
	}
	if len(h.conns) == 0 {
		delete(s.idx, c.hub)
	}
}

func addConn(m map[string]map[*conn]struct{}, key string, c *conn) {
	set := m[key]
	if set == nil {
		set = map[*conn]struct{}{}
		m[key] = set
	}
	set[c] = struct{}{}
}

func removeConn(m map[string]map[*conn]struct{}, key string, c *conn) {
	if set := m[key]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(m, key)
		}
	}
}

func addUserConn(m map[string][]*conn, user string, c *conn) {
	for _, x := range m[user] {
		if x == c {
			return // a set: a connection is indexed under its user once
		}
	}
	m[user] = append(m[user], c)
}

func removeUserConn(m map[string][]*conn, user string, c *conn) {
	cs := m[user]
	for i, x := range cs {
		if x == c {
			cs[i] = cs[len(cs)-1]
			cs[len(cs)-1] = nil
			cs = cs[:len(cs)-1]
			break
		}
	}
	if len(cs) == 0 {
		delete(m, user)
	} else {
		m[user] = cs
	}
}

func (s *Server) closeAllLocal(msg string) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		if c != nil {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close(disconnect{reason: msg, allowReconnect: true})
	}
}
