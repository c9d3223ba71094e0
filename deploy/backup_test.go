package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftplane/raftplane/client"
)

// cursorIndex returns a cursor's log index.
func cursorIndex(t *testing.T, c string) uint64 {
	t.Helper()
	_, idx, _, err := client.ParseCursor(c)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// cursorAfter reports whether cursor a comes after b (same epoch).
func cursorAfter(t *testing.T, a, b string) bool {
	t.Helper()
	_, ai, ao, err1 := client.ParseCursor(a)
	_, bi, bo, err2 := client.ParseCursor(b)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	return ai > bi || (ai == bi && ao > bo)
}

// joinGroups connects a client as user to n's hub and joins it to groups;
// it drains the connection's messages until the test ends.
func joinGroups(t *testing.T, n *node, user string, groups ...string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: n.url() + "/hubs/" + hubName + "?user=" + user})
	if err != nil {
		t.Fatalf("%s: dial %s: %v", user, n.name, err)
	}
	go func() {
		for range c.Messages() { // ends when the connection does
		}
	}()
	t.Cleanup(func() { c.Close() })
	for _, g := range groups {
		if _, err := c.Invoke(ctx, "JoinGroup", g); err != nil {
			t.Fatalf("%s: JoinGroup %s: %v", user, g, err)
		}
	}
	return c
}

// backupFacts is what `raftplane snapshot inspect` says.
type backupFacts struct {
	clusterID, last, digest string
	applied                 uint64
	connections             int
}

func inspectOutput(t *testing.T, out string) backupFacts {
	t.Helper()
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `\s+(\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %q in:\n%s", name, out)
		}
		return m[1]
	}
	f := backupFacts{clusterID: field("cluster id"), digest: field("digest")}
	f.applied, _ = strconv.ParseUint(field("applied index"), 10, 64)
	f.connections, _ = strconv.Atoi(field("connections"))
	m := regexp.MustCompile(`(?m)^messages\s+.* last (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no last cursor in:\n%s", out)
	}
	f.last = m[1]
	return f
}

// TestBackup_SaveUnderLoadRestoreIntoNewCluster: `raftplane snapshot save`
// against a 3-node cluster's leader while every node takes sends; the file
// is restored into a new node, which leads a one-node cluster, grows to
// three, and serves exactly the backup's history and groups under the same
// cluster id, the new log continuing past the index gap.
func TestBackup_SaveUnderLoadRestoreIntoNewCluster(t *testing.T) {
	keep := []string{"-disconnect-timeout", "10m"} // the restored connections outlive the test
	src := []*node{newNode(t, "src1", keep...), newNode(t, "src2", keep...), newNode(t, "src3", keep...)}
	src[0].start(t)
	src[0].waitLeader(t)
	src[1].start(t, "-join", src[0].gossip)
	src[2].start(t, "-join", src[0].gossip)
	src[0].waitVoters(t, 3)
	joinGroups(t, src[0], "alice", "red")
	joinGroups(t, src[1], "bob", "red", "blue")
	joinGroups(t, src[2], "carol", "blue")

	// Load: sends to red and blue, through every node in turn.
	var sent atomic.Int64
	stop := make(chan struct{})
	loadErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			group := []string{"red", "blue"}[i%2]
			if _, err := send(src[i%3], group, i); err != nil {
				loadErr <- err
				return
			}
			sent.Add(1)
		}
	}()
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	atLeast := func(n int64) {
		eventually(t, startTimeout, fmt.Sprintf("%d sends", n), func() error {
			select {
			case err := <-loadErr:
				t.Fatalf("load: %v", err)
			default:
			}
			if got := sent.Load(); got < n {
				return fmt.Errorf("%d so far", got)
			}
			return nil
		})
	}
	atLeast(200)
	var leader *node
	for _, n := range src {
		if st, err := n.status(); err == nil && st.Node.State == "Leader" {
			leader = n
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	file := filepath.Join(t.TempDir(), "backup.snap")
	run(t, "snapshot", "save", "-http", leader.http, "-api-key", apiKey, file)
	atLeast(sent.Load() + 100) // the source goes on past the backup
	stopLoad()

	facts := inspectOutput(t, run(t, "snapshot", "inspect", file))
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, mode %v; want 0600 (it holds the cluster secret)", err, fi.Mode().Perm())
	}
	if facts.connections != 3 {
		t.Errorf("the backup holds %d connections, want 3", facts.connections)
	}
	// What the restored cluster must serve: the source's history up to the
	// backup's last cursor, and its groups.
	want := map[string][]historyMsg{}
	wantMembers := map[string][]string{}
	for _, g := range []string{"red", "blue"} {
		h, err := history(leader, g)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(h, func(m historyMsg) bool { return cursorAfter(t, m.Cursor, facts.last) })
		if i < 0 {
			t.Fatalf("%s: the source has no message after the backup's last %s", g, facts.last)
		}
		want[g] = h[:i]
		if wantMembers[g], err = groupMembers(leader, g); err != nil {
			t.Fatal(err)
		}
		t.Logf("group %s: %d messages in the backup, %d in the source", g, i, len(h))
	}
	for _, n := range src {
		n.stop(t) // the old cluster has the same cluster id: it must not meet the new one
	}

	dst := []*node{newNode(t, "dst1", keep...), newNode(t, "dst2", keep...), newNode(t, "dst3", keep...)}
	run(t, "snapshot", "restore", file, "-data", dst[0].data, "-raft", dst[0].raft)
	dst[0].start(t)
	st := dst[0].waitLeader(t)
	if st.Stream.Epoch != facts.clusterID || st.Stream.Digest != facts.digest || st.Stream.LastCursor != facts.last {
		t.Errorf("restored node: cluster %s, digest %s, last %s; backup: %s, %s, %s",
			st.Stream.Epoch, st.Stream.Digest, st.Stream.LastCursor, facts.clusterID, facts.digest, facts.last)
	}
	dst[1].start(t, "-join", dst[0].gossip)
	dst[2].start(t, "-join", dst[0].gossip)
	dst[0].waitVoters(t, 3)
	cur, err := send(dst[2], "red", "after the restore")
	if err != nil {
		t.Fatal(err)
	}
	if idx := cursorIndex(t, cur); idx <= facts.applied+1<<32 {
		t.Errorf("first send after the restore at %s: want past the backup's index %d plus the gap", cur, facts.applied)
	}
	for _, n := range dst {
		n := n
		eventually(t, startTimeout, n.name+" to serve the backup's history and the new send", func() error {
			for _, g := range []string{"red", "blue"} {
				h, err := history(n, g)
				if err != nil {
					return err
				}
				if g == "red" {
					if len(h) == 0 || h[len(h)-1].Cursor != cur {
						return fmt.Errorf("red does not end with %s yet", cur)
					}
					h = h[:len(h)-1]
				}
				if !reflect.DeepEqual(h, want[g]) {
					return fmt.Errorf("group %s: %d messages, the backup %d", g, len(h), len(want[g]))
				}
				m, err := groupMembers(n, g)
				if err != nil {
					return err
				}
				if !reflect.DeepEqual(m, wantMembers[g]) {
					return fmt.Errorf("group %s: members %v, the backup %v", g, m, wantMembers[g])
				}
			}
			return nil
		})
	}
}
