package chaos

import (
	"testing"

	"github.com/raftplane/raftplane/chaos/nemesis"
	"github.com/raftplane/raftplane/chaos/netfault"
	"github.com/raftplane/raftplane/chaos/nodes"
	"github.com/raftplane/raftplane/chaos/sandbox"
)

// setupNetwork gives a run its network: n namespaces on a bridge inside the
// sandbox, torn down when the test ends. Without the sandbox (no
// namespaces on this machine) it falls back to loopback addresses, where
// only process faults (kill, pause, wipe, restarts) can be expressed; under
// CI=true that is a failure instead.
func setupNetwork(t *testing.T, n int) (nemesis.Network, func(int) string, nodes.Launcher) {
	t.Helper()
	if !sb.Inside {
		if sandbox.CI() {
			t.Fatalf("chaos sandbox unavailable (%s): CI=true needs the network faults", sb.Reason)
		}
		t.Logf("WARNING: chaos sandbox unavailable (%s): running on loopback with process faults only; network faults are skipped", sb.Reason)
		return nil, loopbackIP, plainLaunch
	}
	net, err := netfault.Setup(n)
	if err != nil {
		t.Fatalf("network set-up: %v", err)
	}
	t.Cleanup(func() {
		if _, err := net.Teardown(); err != nil {
			t.Errorf("network teardown: %v", err)
		}
	})
	t.Logf("network: %d namespaces, caps %s", n, net.Caps())
	return netNemesis{net}, net.Node, net.Command
}
