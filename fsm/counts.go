package fsm

import "slices"

// Counts over the registry, for the hub's limits (hub/limits.go): they
// answer in O(1) without copying the sets that GroupConnections,
// UserConnections and Connection return, so checking a limit on every
// join or connect costs nothing even for a group of 100000 members.

// GroupSize returns the number of connections in a group.
func (m *Machine) GroupSize(hub, group string) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if h := m.st.Hubs[hub]; h != nil {
		return len(h.Groups[group])
	}
	return 0
}

// UserConnectionCount returns the number of a user's connections in a hub,
// on every node.
func (m *Machine) UserConnectionCount(hub, user string) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if h := m.st.Hubs[hub]; h != nil {
		return len(h.Users[user])
	}
	return 0
}

// ConnectionGroupCount returns how many groups a connection is in and
// whether group is one of them; ok is false for an unknown connection.
func (m *Machine) ConnectionGroupCount(hub, id, group string) (n int, member, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	cs, ok := m.st.conn(hub, id)
	if !ok {
		return 0, false, false
	}
	_, member = slices.BinarySearch(cs.Groups, group)
	return len(cs.Groups), member, true
}
