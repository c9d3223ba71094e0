package fsm

import "testing"

// TestMachine_Counts: the counts agree with the lists they count.
func TestMachine_Counts(t *testing.T) {
	t.Parallel()
	a := newApplier(t, testConfig(t))
	a.apply1(Command{Kind: KindClusterInit, ClusterID: "counts01"})
	a.apply(open("h", "c1", "alice"), open("h", "c2", "alice"), open("h", "c3", "bob"), open("other", "c4", "alice"))
	a.apply(join("h", "c1", "g"), join("h", "c2", "g"), join("h", "c1", "k"), join("other", "c4", "g"))
	a.apply1(closeConn("h", "c2"))

	m := a.m
	for _, tt := range []struct{ hub, user string }{{"h", "alice"}, {"h", "bob"}, {"h", "carol"}, {"other", "alice"}, {"none", "alice"}} {
		if got, want := m.UserConnectionCount(tt.hub, tt.user), len(m.UserConnections(tt.hub, tt.user)); got != want {
			t.Errorf("UserConnectionCount(%s, %s) = %d, want %d", tt.hub, tt.user, got, want)
		}
	}
	for _, tt := range []struct{ hub, group string }{{"h", "g"}, {"h", "k"}, {"h", "none"}, {"other", "g"}, {"none", "g"}} {
		if got, want := m.GroupSize(tt.hub, tt.group), len(m.GroupConnections(tt.hub, tt.group)); got != want {
			t.Errorf("GroupSize(%s, %s) = %d, want %d", tt.hub, tt.group, got, want)
		}
	}
	tests := []struct {
		hub, id, group string
		n              int
		member, ok     bool
	}{
		{"h", "c1", "g", 2, true, true},
		{"h", "c1", "x", 2, false, true},
		{"h", "c3", "g", 0, false, true},
		{"h", "c2", "g", 0, false, false}, // closed
		{"other", "c1", "g", 0, false, false},
	}
	for _, tt := range tests {
		n, member, ok := m.ConnectionGroupCount(tt.hub, tt.id, tt.group)
		if n != tt.n || member != tt.member || ok != tt.ok {
			t.Errorf("ConnectionGroupCount(%s, %s, %s) = %d, %v, %v; want %d, %v, %v",
				tt.hub, tt.id, tt.group, n, member, ok, tt.n, tt.member, tt.ok)
		}
	}
	if got := m.UserConnectionCount("h", "alice"); got != 1 {
		t.Errorf("alice has %d connections in h after one closed, want 1", got)
	}
	if got := m.GroupSize("h", "g"); got != 1 {
		t.Errorf("group g has %d members after one closed, want 1", got)
	}
}
