package fsm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// levelCounter is a slog handler that counts records per level and keeps
// their messages.
type levelCounter struct {
	mu   sync.Mutex
	msgs map[slog.Level][]string
}

func (h *levelCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *levelCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.msgs == nil {
		h.msgs = map[slog.Level][]string{}
	}
	h.msgs[r.Level] = append(h.msgs[r.Level], r.Message)
	return nil
}
func (h *levelCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *levelCounter) WithGroup(string) slog.Handler      { return h }

func (h *levelCounter) at(l slog.Level) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs[l]...)
}

// TestMachine_ApplyUnknownFormatPanics: an entry a newer version may have
// written (an unknown batch version, an unknown kind below KindIgnorable)
// stops the node with a message that says so, rather than let it skip what
// the other replicas apply.
func TestMachine_ApplyUnknownFormatPanics(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{name: "batch version 2", data: []byte{2, 0}},
		{name: "batch version 255", data: []byte{255}},
		{name: "unknown kind 77", data: EncodeBatch([]Command{{Kind: 77, Hub: "h"}})},
		{name: "unknown kind 12 after a valid command", data: EncodeBatch([]Command{
			{Kind: KindPublish, Hub: "h", Audience: AudienceAll, Target: "t"}, {Kind: 12}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMachine(t, testConfig(t))
			defer func() {
				p := recover()
				if p == nil {
					t.Fatal("Apply of an entry in an unknown format did not panic")
				}
				if msg := fmt.Sprint(p); !strings.Contains(msg, "does not know") || !strings.Contains(msg, "upgrade") {
					t.Fatalf("panic %q does not say the format is unknown and how to fix it", msg)
				}
			}()
			m.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: tt.data})
		})
	}
}

// malformedEntries are entries of the known batch version that do not
// decode: every replica rejects them alike.
func malformedEntries() []struct {
	name string
	data []byte
} {
	pub := Command{Kind: KindPublish, ID: "p", Hub: "h", Audience: AudienceAll, Target: "t", Args: []byte(`[1]`)}
	one := func(body []byte) []byte { return append([]byte{batchVersion, 1}, appendBytes(nil, body)...) }
	overExclude := func() []byte {
		b := append(header(KindPublish), byte(AudienceAll))
		b = appendString(b, "")
		b = binary.AppendUvarint(b, MaxExclude+1)
		b = append(b, make([]byte, MaxExclude+1)...)
		b = appendString(b, "t")
		return appendBytes(b, []byte("[]"))
	}
	return []struct {
		name string
		data []byte
	}{
		{name: "empty", data: nil},
		{name: "version only", data: []byte{batchVersion}},
		{name: "count past the data", data: []byte{batchVersion, 5, 0}},
		{name: "trailing bytes after the batch", data: append(EncodeBatch([]Command{pub}), 0)},
		{name: "truncated command", data: EncodeBatch([]Command{pub})[:8]},
		{name: "kind 0", data: one(header(0))},
		{name: "trailing bytes in a publish", data: one(append(EncodeCommand(&pub), 1, 2))},
		{name: "audience 9", data: one(EncodeCommand(&Command{Kind: KindPublish, Audience: 9, Target: "t"}))},
		{name: "exclude list over the limit", data: one(overExclude())},
		{name: "reject without origin", data: one(EncodeCommand(&Command{Kind: KindReject, Hub: "h", Reason: "r"}))},
		{name: "bad origin mark", data: one(append(EncodeCommand(&pub), 0x00, 0, 0, 1))},
		{name: "valid command then a malformed one", data: func() []byte {
			b := []byte{batchVersion, 2}
			b = appendBytes(b, EncodeCommand(&pub))
			return appendBytes(b, header(KindPublish))
		}()},
	}
}

// TestMachine_ApplyMalformedRejected: a malformed entry of a known version
// is rejected whole, on every replica alike: no panic, nothing changes but
// the applied index (not the digest), one error line, the Rejected count,
// an error response wrapping ErrRejected; the next entry applies.
func TestMachine_ApplyMalformedRejected(t *testing.T) {
	for _, tt := range malformedEntries() {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeBatch(tt.data); err == nil || errors.Is(err, ErrUnknownFormat) {
				t.Fatalf("test entry is not malformed in a known format: %v", err)
			}
			logs := &levelCounter{}
			cfg := DefaultConfig()
			cfg.Logger = slog.New(logs)
			a := newApplier(t, cfg)
			a.apply1(withID(Command{Kind: KindClusterInit, ClusterID: "e"}, "init"))
			a.apply1(withID(open("h", "c1", "u"), "open"))
			a.apply1(withID(publish("h", AudienceAll, "", `[0]`), "before"))
			before := a.m.Position()
			newest := a.m.Newest()

			a.index++
			out := a.m.Apply(&raft.Log{Index: a.index, Term: 3, Type: raft.LogCommand, Data: tt.data})
			err, ok := out.(error)
			if !ok || !errors.Is(err, ErrRejected) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Apply returned %#v, want an error wrapping ErrRejected and ErrMalformed", out)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("entry %d", a.index)) {
				t.Errorf("error %q does not name the entry", err)
			}
			after := a.m.Position()
			want := before
			want.Applied = a.index
			if after != want {
				t.Fatalf("Position after the rejected entry = %+v, want %+v", after, want)
			}
			if a.m.Newest() != newest {
				t.Errorf("Newest moved from %d to %d", newest, a.m.Newest())
			}
			if got := a.m.Rejected(); got != 1 {
				t.Errorf("Rejected() = %d, want 1", got)
			}
			if errs := logs.at(slog.LevelError); len(errs) != 1 || !strings.Contains(errs[0], "rejected a malformed log entry") {
				t.Errorf("error lines %q, want one about the rejected entry", errs)
			}
			// The machine keeps working, and the rejected index holds nothing.
			r := a.apply1(withID(publish("h", AudienceAll, "", `[1]`), "after"))
			if r.Err != nil || r.Cursor != (Cursor{Index: a.index}) {
				t.Fatalf("next entry: %+v", r)
			}
			for _, e := range mustSince(t, a.m, Cursor{}, 0) {
				if e.Cursor.Index == a.index-1 {
					t.Fatalf("the rejected entry left %+v in the stream", e)
				}
			}
		})
	}
}

// TestMachine_RejectedSameEverywhere: replicas that get the same entries
// in different ApplyBatch groupings, one of them malformed, end equal.
func TestMachine_RejectedSameEverywhere(t *testing.T) {
	var entries []*raft.Log
	add := func(data []byte) {
		entries = append(entries, &raft.Log{Index: uint64(len(entries) + 1), Type: raft.LogCommand, Data: data})
	}
	add(EncodeBatch([]Command{{Kind: KindClusterInit, ID: "i", Time: t0, ClusterID: "e"}}))
	add(EncodeBatch([]Command{at(withID(open("h", "c", "u"), "o"), t0)}))
	for _, m := range malformedEntries() {
		add(m.data)
		add(EncodeBatch([]Command{at(withID(join("h", "c", m.name), "j"+m.name), t0+1)}))
	}
	one := newTestMachine(t, testConfig(t))
	for _, l := range entries {
		one.Apply(l)
	}
	all := newTestMachine(t, testConfig(t))
	all.ApplyBatch(entries)
	if p1, p2 := one.Position(), all.Position(); p1 != p2 || one.Rejected() != all.Rejected() {
		t.Fatalf("replicas differ: %+v (%d rejected) vs %+v (%d rejected)", p1, one.Rejected(), p2, all.Rejected())
	}
	if got, want := one.Rejected(), uint64(len(malformedEntries())); got != want {
		t.Fatalf("Rejected() = %d, want %d", got, want)
	}
	if g := one.GroupConnections("h", "empty"); len(g) != 1 {
		t.Fatalf("the join after a rejected entry was not applied: %v", g)
	}
}

func TestMachine_Newest(t *testing.T) {
	a := newApplier(t, testConfig(t))
	if got := a.m.Newest(); got != 0 {
		t.Fatalf("Newest() of an empty machine = %d", got)
	}
	a.apply1(at(publish("h", AudienceAll, "", `[]`), t0+5))
	a.apply1(at(publish("h", AudienceAll, "", `[]`), t0+2)) // older: Newest stays
	if got := a.m.Newest(); got != t0+5 {
		t.Fatalf("Newest() = %d, want %d", got, t0+5)
	}
}

// TestMachine_AncientStampDoesNotWrap: a stamp so far behind the newest
// that newest-stamp overflows int64 is expired, not taken for a new one
// (which would also pin the dedup queue: it is forgotten in order).
func TestMachine_AncientStampDoesNotWrap(t *testing.T) {
	a := newApplier(t, testConfig(t))
	a.apply1(at(withID(publish("h", AudienceAll, "", `[]`), "now"), math.MaxInt64/2))
	if r := a.apply1(at(withID(publish("h", AudienceAll, "", `[]`), "ancient"), math.MinInt64)); r.Err != ErrExpired {
		t.Fatalf("a command stamped MinInt64 after one at MaxInt64/2: %+v, want ErrExpired", r)
	}
	if !olderThan(math.MinInt64, math.MaxInt64, 0) || olderThan(math.MaxInt64, math.MinInt64, 0) || olderThan(5, 5, 0) {
		t.Fatal("olderThan gets the extremes wrong")
	}
}

// fuzzEntries splits fuzz input into log entries, each a uvarint length and
// that many bytes.
func fuzzEntries(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 && len(out) < 64 {
		n, k := binary.Uvarint(data)
		if k <= 0 {
			return append(out, data)
		}
		data = data[k:]
		n = min(n, uint64(len(data)))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

func joinEntries(entries ...[]byte) []byte {
	var b []byte
	for _, e := range entries {
		b = appendBytes(b, e)
	}
	return b
}

// FuzzApply feeds arbitrary entries to replicas that group them into
// ApplyBatch calls differently: none may panic (but on an entry in an
// unknown format, where every replica must), all must end equal, and a
// snapshot of the result restores to an equal machine that goes on working.
func FuzzApply(f *testing.F) {
	b := func(cmds ...Command) []byte {
		for i := range cmds {
			if cmds[i].Time == 0 {
				cmds[i].Time = t0 + int64(i)
			}
		}
		return EncodeBatch(cmds)
	}
	f.Add(joinEntries(
		b(Command{Kind: KindClusterInit, ID: "i", ClusterID: "e", Secret: []byte("s")}),
		b(withID(open("h", "c1", "u"), "o1"), withID(open("h", "c2", "v"), "o2")),
		b(withID(join("h", "c1", "g"), "j"), withOrigin(publish("h", AudienceGroup, "g", `[1]`), "c1", "1", 1)),
		b(Command{Kind: KindConnAck, Hub: "h", Conn: "c1", AckSeq: 1, From: Cursor{Index: 3}}),
		b(Command{Kind: KindConnResume, Hub: "h", Conn: "c1", User: "u", Node: "n2", From: Cursor{Index: 2}}),
		b(Command{Kind: KindReject, Hub: "h", Reason: "no", Origin: Origin{Conn: "c2", Seq: 1}}),
		b(publish("h", AudienceConnection, "c9", `[]`), withID(leave("h", "c1", "g"), "j")),
		b(closeConn("h", "c2"), Command{Kind: 200, ID: "future"}),
	))
	for _, m := range malformedEntries() {
		f.Add(joinEntries(b(withID(open("h", "c", "u"), "o")), m.data, b(withID(join("h", "c", "g"), "j"))))
	}
	f.Add(joinEntries(b(at(publish("h", AudienceAll, "", `[]`), math.MaxInt64)), b(at(publish("h", AudienceAll, "", `[]`), math.MinInt64))))
	// Invoke groups, the same one twice (skipped whole), and a format record.
	inv := Command{Kind: KindInvoke, ID: "v", Hub: "h", Conn: "c1", Target: "M", Effects: 2, Args: []byte(`1`), Origin: Origin{Conn: "c1", InvocationID: "9", Seq: 2}}
	group := func() []byte {
		return b(effect(join("h", "c1", "g2")), effect(publish("h", AudienceGroup, "g2", `[2]`)), inv)
	}
	f.Add(joinEntries(b(withID(open("h", "c1", "u"), "o1")), group(), b(Command{Kind: KindFormat, Format: 2}), group()))
	// A close (its entry carries the user) and connection events progress.
	f.Add(joinEntries(b(withID(open("h", "c1", "u"), "o1")), b(closeConn("h", "c1")),
		b(Command{Kind: KindEventsDone, From: Cursor{Index: 2}}), b(Command{Kind: KindEventsDone, From: Cursor{Index: 1}})))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := DefaultConfig()
		cfg.CacheMaxEntries = 8 // evictions too
		var logs []*raft.Log
		for _, e := range fuzzEntries(data) {
			if _, err := DecodeBatch(e); errors.Is(err, ErrUnknownFormat) {
				mustPanic(t, cfg, e)
				continue
			}
			logs = append(logs, &raft.Log{Index: uint64(len(logs) + 1), Type: raft.LogCommand, Data: e})
		}
		m1, m2 := newTestMachine(t, cfg), newTestMachine(t, cfg)
		for _, l := range logs {
			checkResponse(t, l, m1.Apply(l))
		}
		for i, out := range m2.ApplyBatch(logs) {
			checkResponse(t, logs[i], out)
		}
		p1, p2 := m1.Position(), m2.Position()
		if p1 != p2 || m1.Rejected() != m2.Rejected() || m1.Newest() != m2.Newest() {
			t.Fatalf("replicas differ after the same entries:\n%+v rejected %d\n%+v rejected %d", p1, m1.Rejected(), p2, m2.Rejected())
		}
		// The cache keeps commands encoded: what it decodes must decode.
		e1, err1 := m1.Since(p1.Floor, 0)
		e2, err2 := m2.Since(p2.Floor, 0)
		if err1 != nil || err2 != nil {
			t.Fatalf("Since(Floor): %v; %v", err1, err2)
		}
		if !reflect.DeepEqual(e1, e2) {
			t.Fatal("replicas serve different streams")
		}
		m3 := newTestMachine(t, cfg)
		if err := restore(t, m3, snapshotBytes(t, m1)); err != nil {
			t.Fatalf("restoring a snapshot of the state these entries built: %v", err)
		}
		if p3 := m3.Position(); p3 != p1 {
			t.Fatalf("restored %+v, snapshotted %+v", p3, p1)
		}
		next := &raft.Log{Index: uint64(len(logs) + 1), Type: raft.LogCommand,
			Data: EncodeBatch([]Command{at(withID(publish("h", AudienceAll, "", `[]`), "next"), m1.Newest())})}
		checkResponse(t, next, m1.Apply(next))
		checkResponse(t, next, m3.Apply(next))
		if d1, d3 := m1.Position().Digest, m3.Position().Digest; d1 != d3 {
			t.Fatalf("after one more entry: digest %x, restored copy %x", d1, d3)
		}
	})
}

// checkResponse checks Apply's response has the shape raft's submitters
// expect: one Result per command, or ErrRejected for the whole entry.
func checkResponse(t *testing.T, l *raft.Log, out any) {
	t.Helper()
	cmds, err := DecodeBatch(l.Data)
	switch out := out.(type) {
	case []Result:
		if err != nil || len(out) != len(cmds) {
			t.Fatalf("entry %d: %d results for %d commands (decode error %v)", l.Index, len(out), len(cmds), err)
		}
		for _, r := range out {
			if r.Err != nil && r.Err != ErrExpired {
				ErrorCode(r.Err) // panics on an outcome without a code
			}
		}
	case error:
		if err == nil || !errors.Is(out, ErrRejected) {
			t.Fatalf("entry %d: error response %v for an entry that decodes (%v)", l.Index, out, err)
		}
	default:
		t.Fatalf("entry %d: response %T", l.Index, out)
	}
}

func mustPanic(t *testing.T, cfg Config, data []byte) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("an entry in an unknown format (%x) did not stop the machine", data)
		}
	}()
	newTestMachine(t, cfg).Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
}
