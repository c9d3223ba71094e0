package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftplane/raftplane/fsm"
)

// soloNode is a one-node cluster without gossip (Members nil), the leader
// of its own log, with an RPC endpoint on a loopback listener of its own
// whose connections go straight to the node's RPC server.
type soloNode struct {
	node    *Node
	machine *fsm.Machine
	ln      net.Listener
	logs    *warnCounter
}

// warnCounter counts the warnings a node logs, keeping their messages.
type warnCounter struct {
	mu   sync.Mutex
	msgs []string
}

func (h *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *warnCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}
func (h *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *warnCounter) WithGroup(string) slog.Handler      { return h }

func (h *warnCounter) matching(sub string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

func startSolo(tb testing.TB, tweak func(*Config)) *soloNode {
	tb.Helper()
	machine, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	logs := &warnCounter{}
	cfg := testClusterConfig(nodeOpts{id: "solo", dir: tb.TempDir(), raftBind: "127.0.0.1:0", maxVoters: 1,
		hold: testHoldTimeout, reapAfter: testReapAfter})
	cfg.Logger = slog.New(logs)
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := New(cfg, machine)
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeWithin)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			tb.Errorf("Close: %v; goroutines:\n%s", err, goroutineDump())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		tb.Fatal(err)
	}
	for !n.isLeader() { // the cluster-init entry is applied, so it is
		select {
		case <-ctx.Done():
			tb.Fatal("the one node never became leader")
		case <-time.After(pollEvery):
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return &soloNode{node: n, machine: machine, ln: ln, logs: logs}
}

// exchange writes raw bytes to a fresh RPC connection, half-closes it and
// returns every frame the server sends until it closes the connection.
func (s *soloNode) exchange(tb testing.TB, data []byte) []frame {
	tb.Helper()
	client, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	defer client.Close()
	server, err := s.ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	if !s.node.adoptRPCConn(server) {
		tb.Fatal("node closed")
	}
	werr := make(chan error, 1)
	go func() {
		_, err := client.Write(data)
		if err == nil {
			err = client.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	_ = client.SetReadDeadline(time.Now().Add(waitTimeout))
	r := bufio.NewReader(client)
	var out []frame
	for {
		f, err := readFrame(r)
		if err != nil {
			if errors.Is(err, io.EOF) || isReset(err) {
				break
			}
			tb.Fatalf("reading the server's answers: %v (after %d frames)", err, len(out))
		}
		out = append(out, f)
	}
	<-werr // the server may close before reading everything: a write error is fine
	return out
}

// isReset reports a connection the server closed with unread data.
func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

func wire(frames ...frame) []byte {
	var b strings.Builder
	for _, f := range frames {
		if err := writeFrame(&b, f); err != nil {
			panic(err)
		}
	}
	return []byte(b.String())
}

func batchOf(cmds ...fsm.Command) []byte { return fsm.EncodeBatch(cmds) }

// TestRPC_Dispatch: every request gets the answer it should, and nothing
// invalid reaches the log through the forward path.
func TestRPC_Dispatch(t *testing.T) {
	t.Parallel()
	s := startSolo(t, nil)
	longExclude := testCommand("long")
	longExclude.Exclude = make([]string, fsm.MaxExclude+1)
	for i := range longExclude.Exclude {
		longExclude.Exclude[i] = "c"
	}
	noTarget := testCommand("no-target")
	noTarget.Target = ""
	tests := []struct {
		name    string
		req     frame
		typ     byte
		why     byte   // for rpcRefused
		message string // in the body of rpcFailed / rpcRefused
	}{
		{name: "forward", req: frame{typ: rpcForward, id: 1, body: batchOf(testCommand("ok-1"), testCommand("ok-2"))}, typ: rpcForwardOK},
		{name: "stats", req: frame{typ: rpcStats, id: 2}, typ: rpcStatsOK},
		{name: "unknown type", req: frame{typ: 99, id: 3}, typ: rpcFailed, message: "unknown request type 99"},
		{name: "malformed batch", req: frame{typ: rpcForward, id: 4, body: []byte{1, 9}}, typ: rpcRefused, why: refusedInvalid,
			message: "forwarded batch: fsm: malformed command"},
		{name: "unknown batch version", req: frame{typ: rpcForward, id: 5, body: []byte{2, 0}}, typ: rpcRefused, why: refusedInvalid,
			message: "unknown log format"},
		{name: "exclude list over the limit", req: frame{typ: rpcForward, id: 6, body: batchOf(longExclude)}, typ: rpcRefused,
			why: refusedInvalid, message: "exclude list of 65537"},
		{name: "invalid command", req: frame{typ: rpcForwardStamped, id: 7, body: batchOf(testCommand("ok-3"), noTarget)},
			typ: rpcRefused, why: refusedInvalid, message: "command 1: fsm: invalid command: publish without a target"},
		{name: "without id", req: frame{typ: rpcForward, id: 8, body: batchOf(testCommand(""))}, typ: rpcRefused, why: refusedInvalid,
			message: "needs an id"},
		{name: "cluster-init", req: frame{typ: rpcForward, id: 9, body: batchOf(fsm.Command{Kind: fsm.KindClusterInit, ID: "x", ClusterID: "evil"})},
			typ: rpcRefused, why: refusedInvalid, message: "written by the leader only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := s.exchange(t, wire(tc.req))
			if len(got) != 1 {
				t.Fatalf("%d answers, want 1: %+v", len(got), got)
			}
			f := got[0]
			if f.typ != tc.typ || f.id != tc.req.id {
				t.Fatalf("answer type %d id %d (body %q), want type %d id %d", f.typ, f.id, f.body, tc.typ, tc.req.id)
			}
			switch f.typ {
			case rpcRefused:
				if len(f.body) == 0 || f.body[0] != tc.why || !strings.Contains(string(f.body[1:]), tc.message) {
					t.Fatalf("refusal %q, want reason %d and %q", f.body, tc.why, tc.message)
				}
			case rpcFailed:
				if !strings.Contains(string(f.body), tc.message) {
					t.Fatalf("failure %q, want %q", f.body, tc.message)
				}
			case rpcForwardOK:
				res, err := decodeResults(f.body)
				if err != nil || len(res) != 2 || res[0].Err != nil || res[1].Err != nil {
					t.Fatalf("results %+v, %v", res, err)
				}
			}
		})
	}
	// Of all these, only the two valid commands are in the stream; the
	// valid command of the refused request was not submitted either.
	entries, err := s.machine.Since(fsm.Cursor{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		if e.Kind != fsm.KindClusterInit {
			ids = append(ids, e.ID)
		}
	}
	if strings.Join(ids, ",") != "ok-1,ok-2" {
		t.Fatalf("commands in the log: %v, want ok-1,ok-2", ids)
	}
	if r := s.machine.Rejected(); r != 0 {
		t.Fatalf("%d entries rejected by the FSM", r)
	}
}

// TestRPC_FutureStampClamped: a command forwarded with a stamp ten years
// ahead is clamped to the leader's clock, and later commands still apply
// (before the clamp, every later command failed "expired", for good).
func TestRPC_FutureStampClamped(t *testing.T) {
	t.Parallel()
	s := startSolo(t, nil)
	future := testCommand("from-the-future")
	future.Time = time.Now().Add(10 * 365 * 24 * time.Hour).UnixNano()
	near := testCommand("slightly-ahead")
	near.Time = time.Now().Add(s.node.cfg.MaxClockSkew / 2).UnixNano()
	before := time.Now().UnixNano()
	got := s.exchange(t, wire(frame{typ: rpcForwardStamped, id: 1, body: batchOf(future, near)}))
	after := time.Now().UnixNano()
	if len(got) != 1 || got[0].typ != rpcForwardOK {
		t.Fatalf("answers %+v, want one rpcForwardOK", got)
	}
	res, err := decodeResults(got[0].body)
	if err != nil || len(res) != 2 {
		t.Fatalf("results %+v, %v", res, err)
	}
	entries, err := s.machine.Since(fsm.Cursor{Index: res[0].Cursor.Index - 1, Offset: math.MaxUint32}, 0)
	if err != nil || len(entries) != 2 {
		t.Fatalf("entries %+v, %v", entries, err)
	}
	if tm := entries[0].Time; tm < before || tm > after {
		t.Errorf("the future stamp became %d, want the leader's clock (%d..%d)", tm, before, after)
	}
	if entries[1].Time != near.Time {
		t.Errorf("a stamp within MaxClockSkew changed from %d to %d", near.Time, entries[1].Time)
	}
	if s.logs.matching("clamped forwarded command stamps") != 1 {
		t.Errorf("no warning about the clamped stamp")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := s.node.Publish(ctx, testCommand("later")); err != nil {
		t.Fatalf("a command after the clamped one: %v", err)
	}
}

// TestNode_StampNeverBackward: when the newest stamp in the log is ahead of
// this leader's clock (a previous leader's clock was ahead), the leader
// stamps at the newest stamp, so its commands are not expired.
func TestNode_StampNeverBackward(t *testing.T) {
	t.Parallel()
	s := startSolo(t, nil)
	ahead := time.Now().Add(time.Hour).UnixNano()
	c := testCommand("by-a-leader-an-hour-ahead")
	c.Time = ahead
	f := s.node.raft.Apply(fsm.EncodeBatch([]fsm.Command{c}), time.Second)
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	if got := s.machine.Newest(); got != ahead {
		t.Fatalf("Newest() = %d, want %d", got, ahead)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cur, err := s.node.Publish(ctx, testCommand("now"))
	if err != nil {
		t.Fatalf("Publish with the log's time an hour ahead: %v", err)
	}
	es, err := s.machine.Since(fsm.Cursor{Index: cur.Index - 1, Offset: math.MaxUint32}, 1)
	if err != nil || len(es) != 1 || es[0].Time < ahead {
		t.Fatalf("the new command's entry %+v (%v): want a stamp of at least %d", es, err, ahead)
	}
}

// TestNode_RejectedEntry: an entry the FSM rejects (here appended under the
// validation, straight through raft) reaches the submitter as
// fsm.ErrRejected, and the node goes on.
func TestNode_RejectedEntry(t *testing.T) {
	t.Parallel()
	s := startSolo(t, nil)
	f := s.node.raft.Apply([]byte{1, 5, 0}, time.Second)
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := applyResponse(f.Response()); !errors.Is(err, fsm.ErrRejected) {
		t.Fatalf("response to a malformed entry: %v, want fsm.ErrRejected", err)
	}
	if s.machine.Rejected() != 1 {
		t.Fatalf("Rejected() = %d", s.machine.Rejected())
	}
	if st := s.node.Status(); st.RejectedEntries != 1 {
		t.Fatalf("Status().RejectedEntries = %d, want 1", st.RejectedEntries)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := s.node.Publish(ctx, testCommand("after")); err != nil {
		t.Fatalf("Publish after a rejected entry: %v", err)
	}
}

func TestNode_PublishRefusesInvalid(t *testing.T) {
	t.Parallel()
	s := startSolo(t, nil)
	long := testCommand("")
	long.Exclude = make([]string, fsm.MaxExclude+1)
	for _, c := range []fsm.Command{long, {Kind: fsm.KindClusterInit, ClusterID: "x"}, {Kind: fsm.KindPublish, Hub: "h"}} {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		_, err := s.node.Publish(ctx, c)
		cancel()
		if !errors.Is(err, fsm.ErrInvalid) {
			t.Errorf("Publish(%s) = %v, want fsm.ErrInvalid", c.Kind, err)
		}
	}
	if p := s.machine.Position(); p.Entries != 1 {
		t.Fatalf("%d entries in the stream, want only the cluster-init", p.Entries)
	}
}

func TestApplyResponse(t *testing.T) {
	t.Parallel()
	res := []fsm.Result{{Cursor: fsm.Cursor{Index: 3}}}
	rejected := fmt.Errorf("%w: entry 3: x", fsm.ErrRejected)
	if got, err := applyResponse(res); err != nil || len(got) != 1 {
		t.Errorf("applyResponse(results) = %v, %v", got, err)
	}
	if _, err := applyResponse(rejected); !errors.Is(err, fsm.ErrRejected) {
		t.Errorf("applyResponse(rejected) = %v", err)
	}
	if _, err := applyResponse(nil); err == nil || !strings.Contains(err.Error(), "unexpected apply response <nil>") {
		t.Errorf("applyResponse(nil) = %v", err)
	}
}

func TestRefusalError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body []byte
		want error
		msg  string
	}{
		{append([]byte{refusedInvalid}, "bad"...), fsm.ErrInvalid, "refused by the leader l1: bad"},
		{append([]byte{refusedRejected}, "entry 9"...), fsm.ErrRejected, "leader l1: entry 9"},
		{nil, fsm.ErrInvalid, "refused by the leader l1"},
		{[]byte("\x07odd"), fsm.ErrInvalid, "odd"},
	} {
		err := refusalError("l1", tc.body)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("refusalError(%q) = %v, want %v with %q", tc.body, err, tc.want, tc.msg)
		}
	}
}

// FuzzRPCDispatch feeds arbitrary bytes to the server side of an RPC
// connection of a one-node cluster: it never panics, answers only with
// well-formed responses, closes the connection on a malformed frame, and
// whatever it commits is a valid command stamped no later than the
// leader's clock allows.
func FuzzRPCDispatch(f *testing.F) {
	future := testCommand("f")
	future.Time = math.MaxInt64
	for _, seed := range [][]byte{
		wire(frame{typ: rpcForward, id: 1, body: batchOf(testCommand("a"))}),
		wire(frame{typ: rpcForwardStamped, id: 2, body: batchOf(future, testCommand("b"))}),
		wire(frame{typ: rpcStats, id: 3}, frame{typ: 42, id: 4}),
		wire(frame{typ: rpcForward, id: 5, body: []byte{1, 1, 3, 2, 0, 0}}),
		wire(frame{typ: rpcForward, id: 6, body: batchOf(fsm.Command{Kind: fsm.KindConnOpen, ID: "o", Hub: "h", Conn: "c"},
			fsm.Command{Kind: fsm.KindGroupJoin, ID: "j", Hub: "h", Conn: "c", Group: "g"})}),
		{0x80, 0x80, 0x80, 0x80, 0x7f},
		{3, rpcStats},
		{},
	} {
		f.Add(seed)
	}
	s := startSolo(f, nil)
	var mu sync.Mutex // fuzz inputs may run in parallel; the checks read a shared cursor
	var seen fsm.Cursor
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, ans := range s.exchange(t, data) {
			switch ans.typ {
			case rpcForwardOK:
				if _, err := decodeResults(ans.body); err != nil {
					t.Fatalf("malformed rpcForwardOK: %v", err)
				}
			case rpcStatsOK, rpcNotLeader:
			case rpcFailed, rpcRefused:
				if len(ans.body) < 2 {
					t.Fatalf("answer %d without a message", ans.typ)
				}
			default:
				t.Fatalf("answer of type %d", ans.typ)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		entries, err := s.machine.Since(seen, 0)
		if err != nil {
			t.Fatal(err)
		}
		limit := time.Now().Add(s.node.cfg.MaxClockSkew).UnixNano()
		for _, e := range entries {
			seen = e.Cursor
			if e.Kind == fsm.KindClusterInit {
				continue
			}
			if err := e.Command.Validate(); err != nil {
				t.Fatalf("an invalid command reached the log through the RPC: %v", err)
			}
			if e.Time > limit {
				t.Fatalf("a command stamped %s ahead reached the log", time.Duration(e.Time-time.Now().UnixNano()))
			}
		}
		if r := s.machine.Rejected(); r != 0 {
			t.Fatalf("%d entries rejected by the FSM", r)
		}
	})
}

// TestForwardFrame_HoldsLargestCommand: a batch of one command of the
// largest size the log takes fits the body of one RPC frame, so any valid
// command can be forwarded (arithmetic on the encoded sizes, no 64 MiB
// buffers).
func TestForwardFrame_HoldsLargestCommand(t *testing.T) {
	t.Parallel()
	batch := 1 + 1 + fsm.BatchEntrySize(fsm.MaxCommandBytes) // version, count 1, the command
	if batch > maxForwardBatch {
		t.Fatalf("a batch with the largest command is %d bytes, a frame carries %d", batch, maxForwardBatch)
	}
	if frameSize := 1 + binary.MaxVarintLen64 + maxForwardBatch; frameSize > maxRPCFrame {
		t.Fatalf("a frame with the largest batch is %d bytes, the limit is %d", frameSize, maxRPCFrame)
	}
}

// TestBatch_SizeLimit: under a burst, no entry the batcher writes is larger
// than MaxBatchBytes, unless it holds a single command.
func TestBatch_SizeLimit(t *testing.T) {
	t.Parallel()
	const limit = 1024
	s := startSolo(t, func(c *Config) { c.MaxBatchBytes = limit })
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := testCommand(fmt.Sprintf("burst-%d", i))
			c.Args = []byte(`["` + strings.Repeat("x", 250+i*10) + `"]`)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if _, err := s.node.Publish(ctx, c); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	last, err := s.node.stores.base.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var multi int
	for i := uint64(1); i <= last; i++ {
		var l raft.Log
		if err := s.node.stores.base.GetLog(i, &l); err != nil || l.Type != raft.LogCommand {
			continue
		}
		cmds, err := fsm.DecodeBatch(l.Data)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if len(cmds) > 1 {
			multi++
			if len(l.Data) > limit {
				t.Errorf("entry %d holds %d commands in %d bytes, more than MaxBatchBytes %d", i, len(cmds), len(l.Data), limit)
			}
		}
	}
	t.Logf("%d entries held more than one command", multi)
}
