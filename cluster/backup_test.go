package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/internal/testnet"
)

// testMachine returns a state machine that has applied a cluster id, two
// connections in groups and n publishes, entry by entry from index 1.
func testMachine(t *testing.T, n int) *fsm.Machine {
	t.Helper()
	m, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	cmds := []fsm.Command{
		{Kind: fsm.KindClusterInit, ClusterID: "c0ffee42", Secret: bytes.Repeat([]byte{7}, 32), Time: now},
		{Kind: fsm.KindConnOpen, ID: "o1", Hub: "h", Conn: "c1", User: "u1", Node: "n1", Time: now},
		{Kind: fsm.KindConnOpen, ID: "o2", Hub: "h", Conn: "c2", User: "u2", Node: "n1", Time: now},
		{Kind: fsm.KindGroupJoin, ID: "j1", Hub: "h", Conn: "c1", Group: "g", Time: now},
		{Kind: fsm.KindGroupJoin, ID: "j2", Hub: "h", Conn: "c2", Group: "g", Time: now},
	}
	for i := range n {
		c := testCommand(fmt.Sprintf("p%d", i))
		c.Time = now
		cmds = append(cmds, c)
	}
	for i, c := range cmds {
		res := m.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: fsm.EncodeBatch([]fsm.Command{c})})
		if rs, ok := res.([]fsm.Result); !ok || rs[0].Err != nil {
			t.Fatalf("apply %v: %v", c.Kind, res)
		}
	}
	return m
}

// backupOf writes a backup of m.
func backupOf(t *testing.T, m *fsm.Machine) []byte {
	t.Helper()
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	h := BackupHeader{Format: BackupFormat, ClusterID: m.Epoch(), NodeID: "n1", Created: time.Now().UTC()}
	if err := writeBackup(&buf, h, func(s raft.SnapshotSink) error { return snap.Persist(s) }); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBackup_FileRoundTrip(t *testing.T) {
	t.Parallel()
	m := testMachine(t, 2000) // a state of several chunks
	b := backupOf(t, m)
	info, err := InspectBackup(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	want := m.Position()
	if info.Stream != want {
		t.Errorf("backup holds %+v, the machine %+v", info.Stream, want)
	}
	if info.Connections != 2 || info.Header.ClusterID != "c0ffee42" || info.Header.NodeID != "n1" {
		t.Errorf("info %+v", info)
	}
	t.Logf("%d entries: state %d bytes, file %d bytes", want.Entries, info.Bytes, len(b))
}

// TestBackup_DamageIsDetected: every kind of damage to a file is refused
// with ErrBadBackup, never read as a smaller state.
func TestBackup_DamageIsDetected(t *testing.T) {
	t.Parallel()
	good := backupOf(t, testMachine(t, 300))
	flip := func(at int) []byte {
		b := slices.Clone(good)
		b[at] ^= 0x40
		return b
	}
	cases := map[string][]byte{
		"empty":                 nil,
		"wrong magic":           flip(0),
		"header length":         flip(len(backupMagic) + 1),
		"a byte of the header":  flip(len(backupMagic) + 10),
		"a byte of the state":   flip(len(good) / 2),
		"the checksum":          flip(len(good) - 1),
		"truncated in state":    good[:len(good)/2],
		"truncated in checksum": good[:len(good)-5],
		"no checksum":           good[:len(good)-32],
		"trailing data":         append(slices.Clone(good), 0),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := InspectBackup(bytes.NewReader(b))
			if !errors.Is(err, ErrBadBackup) {
				t.Fatalf("InspectBackup: %v, want ErrBadBackup", err)
			}
			t.Log(err)
		})
	}

	// The same through the reader a restore copies from: the damage shows
	// as an error at the end at the latest, never as a clean EOF.
	br, err := OpenBackup(bytes.NewReader(flip(len(good) / 2)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bytes.NewBuffer(nil).ReadFrom(br); !errors.Is(err, ErrBadBackup) {
		t.Fatalf("reading a damaged state: %v, want ErrBadBackup", err)
	}
}

func TestBackup_OtherFormatRefused(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := BackupHeader{Format: BackupFormat + 1}
	if err := writeBackup(&buf, h, func(raft.SnapshotSink) error { return nil }); err != nil {
		t.Fatal(err)
	}
	_, err := OpenBackup(&buf)
	if !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), "format 2") {
		t.Fatalf("got %v", err)
	}
}

func TestRestoreBackup_BadInput(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "b.snap")
	if err := os.WriteFile(file, backupOf(t, testMachine(t, 3)), 0o600); err != nil {
		t.Fatal(err)
	}
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "node-id"), []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(t.TempDir(), "d.snap")
	b := backupOf(t, testMachine(t, 3))
	if err := os.WriteFile(damaged, b[:len(b)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	ok := RestoreOptions{DataDir: filepath.Join(t.TempDir(), "new"), NodeID: "r1", RaftAdvertise: "127.0.0.1:7000", NoSync: true}
	cases := []struct {
		name, file, want string
		tweak            func(*RestoreOptions)
	}{
		{"no node id", file, "no node id", func(o *RestoreOptions) { o.NodeID = "" }},
		{"no address", file, "raft address", func(o *RestoreOptions) { o.RaftAdvertise = "" }},
		{"unspecified address", file, "unspecified", func(o *RestoreOptions) { o.RaftAdvertise = "0.0.0.0:7000" }},
		{"port 0", file, "bad port", func(o *RestoreOptions) { o.RaftAdvertise = "127.0.0.1:0" }},
		{"huge gap", file, "index gap", func(o *RestoreOptions) { o.IndexGap = 1 << 60 }},
		{"data folder not empty", file, "not empty", func(o *RestoreOptions) { o.DataDir = full }},
		{"missing file", filepath.Join(t.TempDir(), "nope"), "no such file", func(*RestoreOptions) {}},
		{"damaged file", damaged, "not a valid raftplane backup", func(*RestoreOptions) {}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ok
			c.tweak(&o)
			_, err := RestoreBackup(c.file, o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(ok.DataDir, "raft.db")); err == nil {
				t.Fatal("a refused restore left a raft.db behind")
			}
		})
	}
}

// TestBackup_UnderLoadRestoredIntoNewCluster takes backups from a 3-node
// cluster's leader and a follower while every node publishes, restores the
// leader's into a new node, grows that to 3 nodes, and checks that the new
// cluster serves exactly the history and groups of the backup, under the
// same cluster id, and continues the log past the index gap.
func TestBackup_UnderLoadRestoredIntoNewCluster(t *testing.T) {
	t.Parallel()
	checkGoroutines(t)
	n1 := startNode(t, nodeOpts{id: "n1"})
	waitReady(t, n1)
	n2 := startNode(t, nodeOpts{id: "n2", seeds: []string{n1.gossipAddr}})
	n3 := startNode(t, nodeOpts{id: "n3", seeds: []string{n1.gossipAddr}})
	src := []*testNode{n1, n2, n3}
	waitMembership(t, src, 3, 0)
	epoch := waitReady(t, src...)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, c := range []fsm.Command{
		{Kind: fsm.KindConnOpen, Hub: "h", Conn: "c1", User: "u1", Node: "n1"},
		{Kind: fsm.KindConnOpen, Hub: "h", Conn: "c2", User: "u2", Node: "n2"},
		{Kind: fsm.KindConnOpen, Hub: "h", Conn: "c3", User: "u1", Node: "n3"},
		{Kind: fsm.KindGroupJoin, Hub: "h", Conn: "c1", Group: "red"},
		{Kind: fsm.KindGroupJoin, Hub: "h", Conn: "c2", Group: "red"},
		{Kind: fsm.KindGroupJoin, Hub: "h", Conn: "c3", Group: "blue"},
	} {
		if _, err := n2.node.Publish(ctx, c); err != nil {
			t.Fatalf("%v: %v", c.Kind, err)
		}
	}

	// Load: one publisher per node until stopped.
	var published atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loadErr := make(chan error, len(src))
	for _, n := range src {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := publish(n, ""); err != nil {
					loadErr <- fmt.Errorf("%s: %w", n.id, err)
					return
				}
				published.Add(1)
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	atLeast := func(n int64) {
		waitFor(t, fmt.Sprintf("%d publishes", n), func() error {
			select {
			case err := <-loadErr:
				t.Fatalf("load: %v", err)
			default:
			}
			if got := published.Load(); got < n {
				return fmt.Errorf("%d so far", got)
			}
			return nil
		})
	}
	atLeast(300)
	l := waitLeader(t, src)
	var fromLeader, fromFollower bytes.Buffer
	if err := l.node.Backup(ctx, &fromLeader); err != nil {
		t.Fatalf("backup from the leader: %v", err)
	}
	f := followers(src, l)[0]
	if err := f.node.Backup(ctx, &fromFollower); err != nil {
		t.Fatalf("backup from a follower: %v", err)
	}
	atLeast(published.Load() + 200) // the cluster goes on past the backups
	stopLoad()

	stream := waitApplied(t, src, l.machine.Position().Last)
	prefix := func(last fsm.Cursor) []fsm.Entry {
		i := slices.IndexFunc(stream, func(e fsm.Entry) bool { return last.Less(e.Cursor) })
		if i < 0 {
			i = len(stream)
		}
		return stream[:i]
	}
	var leaderInfo BackupInfo
	for name, b := range map[string][]byte{"leader": fromLeader.Bytes(), "follower": fromFollower.Bytes()} {
		info, err := InspectBackup(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s's backup: %v", name, err)
		}
		if info.Stream.Epoch != epoch || info.Connections != 3 {
			t.Errorf("%s's backup: epoch %s, %d connections; want %s, 3", name, info.Stream.Epoch, info.Connections, epoch)
		}
		if n := len(prefix(info.Stream.Last)); n != info.Stream.Entries {
			t.Errorf("%s's backup holds %d entries up to %s; the cluster had %d there", name, info.Stream.Entries, info.Stream.Last, n)
		}
		t.Logf("%s's backup: %d entries up to %s (the cluster went on to %s), %d bytes of state",
			name, info.Stream.Entries, info.Stream.Last, stream[len(stream)-1].Cursor, info.Bytes)
		if name == "leader" {
			leaderInfo = info
		}
	}
	want := prefix(leaderInfo.Stream.Last)
	wantRed, wantBlue := l.machine.GroupConnections("h", "red"), l.machine.GroupConnections("h", "blue")
	for _, n := range src {
		n.kill(t)
	}

	file := filepath.Join(t.TempDir(), "cluster.snap")
	if err := os.WriteFile(file, fromLeader.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, raftAddr := filepath.Join(t.TempDir(), "r1"), testnet.Addr(t)
	res, err := RestoreBackup(file, RestoreOptions{DataDir: dir, NodeID: "r1", RaftAdvertise: raftAddr, IndexGap: DefaultIndexGap, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Index != leaderInfo.Stream.Applied+DefaultIndexGap {
		t.Errorf("restored at index %d, want %d", res.Index, leaderInfo.Stream.Applied+DefaultIndexGap)
	}
	// The restored connections belong to nodes that are gone; reaping
	// them is the hub's (hub/reap.go), and no hub runs here.
	r1 := startNode(t, nodeOpts{id: "r1", dir: dir, raftBind: raftAddr})
	if !r1.node.HadState() {
		t.Error("the restored node found no state")
	}
	if got := r1.node.LocalClusterID(); got != epoch {
		t.Errorf("the restored node says cluster %q before its log replays, want %s", got, epoch)
	}
	waitLeader(t, []*testNode{r1})
	got, err := r1.machine.Since(fsm.Cursor{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the restored node serves %d entries, the backup had %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	if p := r1.machine.Position(); p.Digest != leaderInfo.Stream.Digest || p.Epoch != epoch {
		t.Errorf("restored: digest %x epoch %s, backup: digest %x epoch %s", p.Digest, p.Epoch, leaderInfo.Stream.Digest, epoch)
	}
	if r, b := r1.machine.GroupConnections("h", "red"), r1.machine.GroupConnections("h", "blue"); !reflect.DeepEqual(r, wantRed) || !reflect.DeepEqual(b, wantBlue) {
		t.Errorf("groups red %v blue %v, want %v %v", r, b, wantRed, wantBlue)
	}

	// The new log continues past the gap, and grows to three nodes.
	cur := mustPublish(t, r1, "after-restore")
	if cur.Index <= res.Index {
		t.Errorf("first publish after the restore at %s, want past index %d", cur, res.Index)
	}
	r2 := startNode(t, nodeOpts{id: "r2", seeds: []string{r1.gossipAddr}})
	r3 := startNode(t, nodeOpts{id: "r3", seeds: []string{r1.gossipAddr}})
	dst := []*testNode{r1, r2, r3}
	waitMembership(t, dst, 3, 0)
	last := mustPublish(t, r3, "three-again")
	all := waitApplied(t, dst, last)
	if !reflect.DeepEqual(all[:len(want)], want) {
		t.Fatal("the grown cluster does not serve the backup's history first")
	}
	for _, n := range dst {
		if r := n.machine.GroupConnections("h", "red"); !reflect.DeepEqual(r, wantRed) {
			t.Errorf("%s: group red %v, want %v", n.id, r, wantRed)
		}
	}
}

func firstDiff(a, b []fsm.Entry) int {
	for i := range min(len(a), len(b)) {
		if !reflect.DeepEqual(a[i], b[i]) {
			return i
		}
	}
	return min(len(a), len(b))
}
