package fsm

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// memSink is an in-memory raft.SnapshotSink. writeErr, when set, makes
// every Write fail.
type memSink struct {
	buf      bytes.Buffer
	writeErr error
	closed   bool
	canceled bool
}

func (s *memSink) Write(p []byte) (int, error) {
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	return s.buf.Write(p)
}
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.canceled = true; return nil }

// snapshotBytes snapshots m and persists it into memory.
func snapshotBytes(t testing.TB, m *Machine) []byte {
	t.Helper()
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.canceled {
		t.Fatalf("Persist left the sink closed=%v canceled=%v, want closed", sink.closed, sink.canceled)
	}
	return sink.buf.Bytes()
}

// readCloser records whether Restore closed its reader.
type readCloser struct {
	io.Reader
	closed bool
}

func (r *readCloser) Close() error { r.closed = true; return nil }

func restore(t testing.TB, m *Machine, data []byte) error {
	t.Helper()
	rc := &readCloser{Reader: bytes.NewReader(data)}
	err := m.Restore(rc)
	if !rc.closed {
		t.Fatal("Restore did not close its reader")
	}
	return err
}

// buildState applies a little of everything: registry in two hubs, cached
// entries with both outcome errors, duplicate IDs, evictions.
func buildState(t testing.TB, cfg Config) *applier {
	t.Helper()
	a := newApplier(t, cfg)
	a.apply1(withID(Command{Kind: KindClusterInit, ClusterID: "cluster-a"}, "init"))
	a.gap(1)
	a.apply(
		withID(open("h0", "c1", "alice"), "o1"),
		withID(open("h0", "c2", "alice"), "o2"),
		withID(open("h0", "c3", "bob"), "o3"),
		withID(open("h1", "c1", "u1"), "o4"),
	)
	a.apply(
		withID(join("h0", "c1", "g1"), "j1"),
		withID(join("h0", "c2", "g1"), "j2"),
		withID(join("h0", "c1", "g2"), "j3"),
		withID(join("h1", "c1", "g1"), "j4"),
	)
	a.apply1(withID(open("h0", "c1", "mallory"), "o5"))                   // ErrConnectionExists
	a.apply1(withID(join("h0", "c7", "g1"), "j5"))                        // ErrUnknownConnection
	a.apply1(withID(publish("h0", AudienceConnection, "c7", "[]"), "p0")) // ErrUnknownConnection
	a.gap(2)
	for i := range 30 {
		a.now += int64(time.Second)
		c := publish("h0", AudienceGroup, "g1", `["hello"]`)
		c.Exclude = []string{"c2"}
		if i%3 == 0 {
			c.ID = "p" + string(rune('a'+i))
		}
		a.apply1(c)
	}
	a.apply1(withID(publish("h0", AudienceAll, "", "[]"), "o1")) // duplicate
	a.apply(withID(leave("h0", "c2", "g1"), "l1"), withID(closeConn("h0", "c3"), "x1"))
	a.gap(1)
	return a
}

func TestMachine_SnapshotRestore(t *testing.T) {
	cfg := testConfig(t)
	cfg.CacheMaxEntries = 25 // so the snapshot carries a Floor

	t.Run("same limits", func(t *testing.T) {
		a := buildState(t, cfg)
		want := viewOf(t, a.m)
		if want.Pos.Floor.IsZero() {
			t.Fatal("test state has no evictions")
		}
		m2 := newTestMachine(t, cfg)
		if err := restore(t, m2, snapshotBytes(t, a.m)); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		got := viewOf(t, m2)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("restored machine differs:\n got %+v\nwant %+v", got, want)
		}
		if m2.Epoch() != "cluster-a" {
			t.Fatalf("Epoch() = %q", m2.Epoch())
		}
		if _, err := m2.Since(Cursor{}, 1); !errors.Is(err, ErrCursorTooOld) {
			t.Fatalf("Since(zero) after restore = %v, want ErrCursorTooOld", err)
		}
		checkSameFuture(t, a, m2)
	})

	t.Run("entry errors survive", func(t *testing.T) {
		cfg := testConfig(t) // large cache: keep the failing commands
		a := buildState(t, cfg)
		m2 := newTestMachine(t, cfg)
		if err := restore(t, m2, snapshotBytes(t, a.m)); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		var got []error
		for _, e := range mustSince(t, m2, Cursor{}, 0) {
			if e.Err != nil {
				got = append(got, e.Err)
			}
		}
		want := []error{ErrConnectionExists, ErrUnknownConnection, ErrUnknownConnection}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("restored entry errors = %v, want %v", got, want)
		}
		if !reflect.DeepEqual(viewOf(t, m2), viewOf(t, a.m)) {
			t.Fatal("restored machine differs")
		}
	})

	t.Run("smaller limits evict on restore", func(t *testing.T) {
		a := buildState(t, cfg)
		orig := viewOf(t, a.m)
		small := cfg
		small.CacheMaxEntries = 10
		m2 := newTestMachine(t, small)
		if err := restore(t, m2, snapshotBytes(t, a.m)); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		got := viewOf(t, m2)
		wantEntries := orig.Entries[len(orig.Entries)-10:]
		if !reflect.DeepEqual(got.Entries, wantEntries) {
			t.Fatalf("restored cache = %v, want %v", cursorsOf(got.Entries), cursorsOf(wantEntries))
		}
		wantPos := orig.Pos
		wantPos.First = wantEntries[0].Cursor
		wantPos.Floor = orig.Entries[len(orig.Entries)-11].Cursor
		wantPos.Entries = 10
		wantPos.Bytes = got.Pos.Bytes
		if got.Pos != wantPos {
			t.Fatalf("Position() = %+v, want %+v", got.Pos, wantPos)
		}
		if _, err := m2.Since(orig.Pos.Floor, 1); !errors.Is(err, ErrCursorTooOld) {
			t.Fatalf("Since(old Floor) = %v, want ErrCursorTooOld", err)
		}
		if !reflect.DeepEqual(got.Registry, orig.Registry) {
			t.Fatalf("registry differs:\n got %v\nwant %v", got.Registry, orig.Registry)
		}
		checkSameFuture(t, a, m2)
	})

	t.Run("smaller byte limit evicts on restore", func(t *testing.T) {
		big := testConfig(t)
		a := buildState(t, big)
		small := big
		small.CacheMaxBytes = 1024
		m2 := newTestMachine(t, small)
		if err := restore(t, m2, snapshotBytes(t, a.m)); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		p := m2.Position()
		if p.Bytes > 1024 || p.Entries == 0 || p.Floor.IsZero() || p.Last != a.m.Position().Last {
			t.Fatalf("Position() after restore = %+v", p)
		}
	})

	t.Run("snapshot is taken at Snapshot, not Persist", func(t *testing.T) {
		a := buildState(t, cfg)
		want := viewOf(t, a.m)
		snap, err := a.m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		a.apply(open("h0", "c5", "zed"), join("h0", "c5", "g1"), publish("h0", AudienceAll, "", "[]"))
		a.apply1(closeConn("h0", "c1"))
		var sink memSink
		if err := snap.Persist(&sink); err != nil {
			t.Fatal(err)
		}
		snap.Release()
		m2 := newTestMachine(t, cfg)
		if err := restore(t, m2, sink.buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		if got := viewOf(t, m2); !reflect.DeepEqual(got, want) {
			t.Fatalf("snapshot saw later applies:\n got %+v\nwant %+v", got.Pos, want.Pos)
		}
	})

	t.Run("empty machine", func(t *testing.T) {
		// An empty machine's snapshot is older than a machine with state:
		// refused, and the state stays (TestMachine_RestoreOlderRefused).
		m1 := newTestMachine(t, cfg)
		a := buildState(t, cfg)
		before := viewOf(t, a.m)
		if err := restore(t, a.m, snapshotBytes(t, m1)); !errors.Is(err, ErrStaleSnapshot) {
			t.Fatalf("restoring an empty snapshot over state: %v, want ErrStaleSnapshot", err)
		}
		if got := viewOf(t, a.m); !reflect.DeepEqual(got, before) {
			t.Fatalf("a refused restore changed the state:\n got %+v\nwant %+v", got.Pos, before.Pos)
		}
	})
}

// checkSameFuture applies the same entries to the original machine (through
// a) and to m2, which was restored from a snapshot of it, and fails if the
// results or states differ. The entries exercise dedup before and after the
// window expires.
func checkSameFuture(t *testing.T, a *applier, m2 *Machine) {
	t.Helper()
	b := &applier{t: t, m: m2, index: a.index, now: a.now}
	steps := [][]Command{
		{withID(publish("h0", AudienceAll, "", "[]"), "o1"), withID(publish("h0", AudienceAll, "", "[]"), "new")},
		{withID(open("h0", "c1", "again"), "o5"), withID(join("h0", "c3", "g1"), "j9")},
		{withID(publish("h0", AudienceAll, "", "[]"), "new"), join("h0", "c2", "g2")},
	}
	for i, s := range steps {
		ra, rb := a.apply(s...), b.apply(s...)
		if !reflect.DeepEqual(ra, rb) {
			t.Fatalf("step %d: original %+v, restored %+v", i, ra, rb)
		}
		if i == 0 && (!ra[0].Duplicate || ra[0].Cursor.Index > a.index-1) {
			t.Fatalf("step 0: %+v, want o1 deduplicated against its old cursor", ra[0])
		}
	}
	// Move command time past the window in its own entry: IDs are forgotten
	// after each entry, so this one makes the window expire.
	a.now += int64(DedupWindow) + 1
	b.now = a.now
	if ra, rb := a.apply(publish("h0", AudienceAll, "", "[]")), b.apply(publish("h0", AudienceAll, "", "[]")); !reflect.DeepEqual(ra, rb) {
		t.Fatalf("time step: original %+v, restored %+v", ra, rb)
	}
	ra := a.apply(withID(open("h0", "c1", "again"), "o1"), publish("h0", AudienceAll, "", "[]"))
	rb := b.apply(withID(open("h0", "c1", "again"), "o1"), publish("h0", AudienceAll, "", "[]"))
	if !reflect.DeepEqual(ra, rb) {
		t.Fatalf("after the window: original %+v, restored %+v", ra, rb)
	}
	if ra[0].Duplicate || ra[0].Err != ErrConnectionExists {
		t.Fatalf("after the window: %+v, want applied (and failing: c1 exists)", ra[0])
	}
	// The machines may have different cache limits: the registry and the
	// stream position must agree, and the smaller cache must be a tail of
	// the larger.
	va, vb := viewOf(t, a.m), viewOf(t, m2)
	if !reflect.DeepEqual(va.Registry, vb.Registry) || va.Pos.Last != vb.Pos.Last ||
		va.Pos.Applied != vb.Pos.Applied || va.Pos.Epoch != vb.Pos.Epoch {
		t.Fatalf("states diverged after restore:\noriginal %+v\nrestored %+v", va.Pos, vb.Pos)
	}
	if len(vb.Entries) > len(va.Entries) {
		va, vb = vb, va
	}
	if tail := va.Entries[len(va.Entries)-len(vb.Entries):]; !reflect.DeepEqual(tail, vb.Entries) {
		t.Fatalf("caches diverged after restore:\noriginal %v\nrestored %v", cursorsOf(va.Entries), cursorsOf(vb.Entries))
	}
}

func TestMachine_RestoreWakes(t *testing.T) {
	a := buildState(t, testConfig(t))
	data := snapshotBytes(t, a.m)
	target := a.m.Position().Last

	m2 := newTestMachine(t, testConfig(t))
	ch := m2.Changed()
	wait := waitAsync(context.Background(), m2, target)
	if err := restore(t, m2, data); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("Restore did not close the Changed() channel")
	}
	if err := recvErr(t, wait); err != nil {
		t.Fatalf("Wait(%v) after restore = %v", target, err)
	}
}

// snapshotOf encodes d the way Persist does.
func snapshotOf(t *testing.T, version byte, d *snapshotData) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteByte(version)
	if err := gob.NewEncoder(&buf).Encode(d); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMachine_RestoreErrors(t *testing.T) {
	a := buildState(t, testConfig(t))
	valid := snapshotBytes(t, a.m)
	goodEntry := snapshotEntry{Cursor: Cursor{1, 0}, Command: EncodeCommand(&Command{Kind: KindPublish, Audience: AudienceAll})}

	tests := []struct {
		name string
		data []byte
	}{
		{name: "empty", data: nil},
		{name: "version only", data: []byte{snapshotVersion}},
		{name: "version 0", data: append([]byte{0}, valid[1:]...)},
		{name: "version 2", data: append([]byte{2}, valid[1:]...)},
		{name: "garbage", data: []byte("\x01this is not a gob stream at all")},
		{name: "truncated", data: valid[:len(valid)/2]},
		{name: "truncated by one", data: valid[:len(valid)-1]},
		{name: "bad command", data: snapshotOf(t, snapshotVersion, &snapshotData{
			Entries: []snapshotEntry{goodEntry, {Cursor: Cursor{2, 0}, Command: []byte{77, 0, 0, 0}}}})},
		{name: "unknown outcome code", data: snapshotOf(t, snapshotVersion, &snapshotData{
			Entries: []snapshotEntry{{Cursor: Cursor{1, 0}, Command: goodEntry.Command, ErrCode: 200}}})},
		{name: "dedup mismatch", data: snapshotOf(t, snapshotVersion, &snapshotData{
			DedupQ: []dedupItem{{ID: "a", Time: 1}}, Dedup: []Cursor{{1, 0}, {2, 0}}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := viewOf(t, a.m)
			epoch := a.m.Epoch()
			ch := a.m.Changed()
			if err := restore(t, a.m, tt.data); err == nil {
				t.Fatal("Restore succeeded")
			}
			if after := viewOf(t, a.m); !reflect.DeepEqual(after, before) || a.m.Epoch() != epoch {
				t.Fatalf("failed Restore changed the state:\nbefore %+v\nafter  %+v", before.Pos, after.Pos)
			}
			if a.m.Changed() != ch {
				t.Fatal("failed Restore woke readers")
			}
		})
	}
}

func TestSnapshot_PersistError(t *testing.T) {
	a := buildState(t, testConfig(t))
	snap, err := a.m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk full")
	sink := &memSink{writeErr: boom}
	if err := snap.Persist(sink); !errors.Is(err, boom) {
		t.Fatalf("Persist = %v, want an error wrapping %v", err, boom)
	}
	if !sink.canceled || sink.closed {
		t.Fatalf("sink canceled=%v closed=%v, want canceled only", sink.canceled, sink.closed)
	}
}

func TestErrorCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code uint8
	}{
		{name: "nil", err: nil, code: 0},
		{name: "unknown connection", err: ErrUnknownConnection, code: 1},
		{name: "connection exists", err: ErrConnectionExists, code: 2},
		{name: "resume denied", err: ErrResumeDenied, code: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ErrorCode(tt.err); got != tt.code {
				t.Fatalf("ErrorCode(%v) = %d, want %d", tt.err, got, tt.code)
			}
			got, ok := ErrorFromCode(tt.code)
			if !ok || got != tt.err {
				t.Fatalf("ErrorFromCode(%d) = %v, %v; want %v", tt.code, got, ok, tt.err)
			}
		})
	}
	t.Run("unknown code", func(t *testing.T) {
		if err, ok := ErrorFromCode(uint8(len(errCodes))); ok || err != nil {
			t.Fatalf("ErrorFromCode(%d) = %v, %v; want nil, false", len(errCodes), err, ok)
		}
	})
	t.Run("uncoded error panics", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("ErrorCode of an uncoded error did not panic")
			}
		}()
		ErrorCode(errors.New("other"))
	})
}

// TestMachine_Concurrent runs readers, a snapshotter and the applier at once;
// run it under -race.
func TestMachine_Concurrent(t *testing.T) {
	cfg := testConfig(t)
	cfg.CacheMaxEntries = 300
	a := newApplier(t, cfg)
	m := a.m
	const total = 2000

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}

	// The applier: 2,000 commands in entries of 1–4 with gaps.
	var logs [][]Command
	for n := 0; n < total; {
		k := min(1+n%4, total-n)
		cmds := make([]Command, k)
		for j := range cmds {
			id := "c" + string(rune('0'+(n+j)%8))
			switch (n + j) % 5 {
			case 0:
				cmds[j] = open("h0", id, "u")
			case 1:
				cmds[j] = join("h0", id, "g")
			case 2, 3:
				cmds[j] = publish("h0", AudienceGroup, "g", `["m"]`)
			case 4:
				cmds[j] = closeConn("h0", id)
			}
		}
		logs = append(logs, cmds)
		n += k
	}
	entries := make([]*raft.Log, 0, len(logs)*8/7+1)
	for i, cmds := range logs {
		if i%7 == 0 {
			entries = append(entries, a.gapEntry())
		}
		a.now += int64(time.Millisecond)
		entries = append(entries, a.entry(cmds...))
	}
	// The writer applies half, then waits until every other goroutine has
	// done a round, so the second half overlaps with all of them.
	const others = 5
	started := make(chan struct{}, others)
	wg.Go(func() {
		defer cancel()
		for i, l := range entries {
			if i == len(entries)/2 {
				for range others {
					<-started
				}
			}
			if out := m.Apply(l); l.Type == raft.LogCommand {
				if res, ok := out.([]Result); !ok || len(res) == 0 {
					report(fmt.Errorf("Apply(%d) = %v", l.Index, out))
					return
				}
			}
		}
	})

	// Readers: follow the stream with Since and Wait; poke the rest.
	for r := range 4 {
		wg.Go(func() {
			signal := sync.OnceFunc(func() { started <- struct{}{} })
			defer signal()
			var cur Cursor
			seen := 0
			for ctx.Err() == nil {
				changed := m.Changed()
				es, err := m.Since(cur, 64)
				signal()
				if errors.Is(err, ErrCursorTooOld) {
					cur = m.Position().Floor
					continue
				}
				if err != nil {
					report(err)
					return
				}
				for _, e := range es {
					if !cur.Less(e.Cursor) {
						report(errors.New("Since went backwards"))
						return
					}
					cur = e.Cursor
					seen++
				}
				p := m.Position()
				if p.Last.Less(cur) || p.Entries > cfg.CacheMaxEntries {
					report(errors.New("Position inconsistent with Since"))
					return
				}
				m.Connection("h0", "c"+string(rune('0'+r)))
				m.GroupConnections("h0", "g")
				if err := m.Wait(ctx, cur); err != nil {
					report(fmt.Errorf("Wait(%v) for a read cursor: %w", cur, err))
					return
				}
				if len(es) > 0 {
					continue
				}
				if r%2 == 0 { // caught up: sleep on the next entry
					if err := m.Wait(ctx, Cursor{Index: p.Applied + 1}); err != nil && ctx.Err() == nil {
						report(err)
						return
					}
				} else {
					select {
					case <-changed:
					case <-ctx.Done():
					}
				}
			}
			if seen == 0 {
				report(errors.New("reader saw nothing"))
			}
		})
	}

	// The snapshotter: snapshot and restore into another machine.
	other := newTestMachine(t, cfg)
	snapshots := 0
	wg.Go(func() {
		signal := sync.OnceFunc(func() { started <- struct{}{} })
		defer signal()
		for ctx.Err() == nil {
			snap, err := m.Snapshot()
			if err != nil {
				report(err)
				return
			}
			var sink memSink
			if err := snap.Persist(&sink); err != nil {
				report(err)
				return
			}
			snap.Release()
			if err := other.Restore(io.NopCloser(&sink.buf)); err != nil {
				report(err)
				return
			}
			if other.Position().Applied > m.Position().Applied {
				report(errors.New("restored copy ahead of the original"))
				return
			}
			snapshots++
			signal()
		}
	})

	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if snapshots == 0 {
		t.Error("no snapshot was taken while applying")
	}
	t.Logf("%d snapshots restored while applying", snapshots)
	if p := m.Position(); p.Last.IsZero() || p.Applied != a.index {
		t.Fatalf("final Position() = %+v, want Applied %d", p, a.index)
	}
	if err := restore(t, other, snapshotBytes(t, m)); err != nil {
		t.Fatal(err)
	}
	if got, want := viewOf(t, other), viewOf(t, m); !reflect.DeepEqual(got, want) {
		t.Fatalf("final restored copy differs:\n got %+v\nwant %+v", got.Pos, want.Pos)
	}
}

// TestSnapshot_PointInTimeWhileApplying: a snapshot captured before more
// applies (which evict the captured cache entries) persists the state as it
// was at the capture, however late Persist runs.
func TestSnapshot_PointInTimeWhileApplying(t *testing.T) {
	cfg := testConfig(t)
	cfg.CacheMaxEntries = 50
	a := newApplier(t, cfg)
	a.apply1(open("h", "c1", "u"))
	for i := range 60 {
		a.apply1(withID(publish("h", AudienceAll, "", fmt.Sprintf("[%d]", i)), fmt.Sprintf("id-%d", i)))
	}
	want := snapshotBytes(t, a.m) // persisted at once
	snap, err := a.m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 { // evicts every entry the snapshot captured
		a.apply1(withID(publish("h", AudienceAll, "", fmt.Sprintf("[%d]", 1000+i)), fmt.Sprintf("late-%d", i)))
	}
	a.apply1(join("h", "c1", "g"))
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	snap.Release() // twice is harmless
	if !bytes.Equal(sink.buf.Bytes(), want) {
		t.Fatal("a snapshot persisted after more applies differs from one persisted at its capture")
	}
	if a.m.pins.Load() != 0 {
		t.Fatalf("pins = %d after release", a.m.pins.Load())
	}
}
