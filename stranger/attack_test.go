package stranger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"testing"

	"github.com/raftplane/raftplane/fsm"
)

func TestDecodeRPC(t *testing.T) {
	u := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	tests := []struct {
		name    string
		typ     byte
		body    []byte
		want    RPCResponse
		wantErr bool
	}{
		{name: "stats", typ: rpcStatsOK, body: u(11, 12), want: RPCResponse{Type: "stats-ok", Applied: 11, LastLogIndex: 12}},
		{name: "stats truncated", typ: rpcStatsOK, body: u(11), wantErr: true},
		{name: "forward ok", typ: rpcForwardOK, body: bytes.Join([][]byte{u(2, 7, 0), {0, 0}, u(8, 1), {0, 1}}, nil),
			want: RPCResponse{Type: "forward-ok", Indexes: []uint64{7, 8}}},
		{name: "forward ok truncated", typ: rpcForwardOK, body: append(u(2, 7, 0), 0), wantErr: true},
		{name: "not leader", typ: rpcNotLeader, want: RPCResponse{Type: "not-leader"}},
		{name: "failed", typ: rpcFailed, body: []byte("busy"), want: RPCResponse{Type: "failed", Message: "busy"}},
		{name: "refused", typ: rpcRefused, body: []byte("\x01bad batch"), want: RPCResponse{Type: "refused", Message: "bad batch"}},
		{name: "unknown type", typ: 99, body: []byte("?"), want: RPCResponse{Type: "99", Message: "?"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRPC(tt.typ, tt.body)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The forged snapshot must be one a node restores, or the attack would be
// vacuous: restored into a fresh FSM, it carries the stranger's epoch.
func TestForgedSnapshotRestores(t *testing.T) {
	data, err := ForgedSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	m, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("a node would refuse the forged snapshot: %v", err)
	}
	if got := m.Epoch(); got != ForgedEpoch {
		t.Fatalf("restored epoch %q, want %q", got, ForgedEpoch)
	}
	if string(m.Secret()) != "the stranger's secret" {
		t.Fatalf("restored secret %q", m.Secret())
	}
}

// The poison entry must be one the FSM cannot decode, or the append attack
// would be an ordinary write.
func TestPoisonBatchIsMalformed(t *testing.T) {
	_, err := fsm.DecodeBatch(PoisonBatch)
	if !errors.Is(err, fsm.ErrMalformed) {
		t.Fatalf("DecodeBatch(PoisonBatch) = %v, want fsm.ErrMalformed", err)
	}
}

// An attack on a port where nothing listens reports the failure without
// having connected.
func TestAttackOnClosedPort(t *testing.T) {
	addr := closedAddr(t)
	for _, r := range []Result{
		Stats(t.Context(), addr, nil),
		MaxTermAppend(t.Context(), addr, nil),
		TimeoutNow(t.Context(), addr, nil),
	} {
		if r.Connected || r.Answered || r.Err == "" || r.AppBytes != 0 {
			t.Errorf("%s on a closed port: %+v", r.Attack, r)
		}
	}
}

func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
