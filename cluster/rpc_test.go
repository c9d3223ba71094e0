package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/raftplane/raftplane/fsm"
)

func encodeFrame(t testing.TB, f frame) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writeFrame(&b, f); err != nil {
		t.Fatalf("writeFrame: %v", err)
	}
	return b.Bytes()
}

func TestWriteFrame_RoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    frame
	}{
		{"empty body, id 0", frame{typ: rpcStats, id: 0}},
		{"small body", frame{typ: rpcForward, id: 1, body: []byte("hello")}},
		{"one-byte varint id limit", frame{typ: rpcForwardOK, id: 127, body: []byte{0}}},
		{"two-byte id", frame{typ: rpcStatsOK, id: 128, body: []byte{1, 2, 3}}},
		{"max id", frame{typ: rpcFailed, id: math.MaxUint64, body: []byte("boom")}},
		{"type zero", frame{typ: 0, id: 7}},
		{"type 255", frame{typ: 255, id: 7, body: []byte{0xff}}},
		{"body over the bufio buffer", frame{typ: rpcForward, id: 42, body: bytes.Repeat([]byte("x"), 3*4096+17)}},
		{"body over a one-byte length", frame{typ: rpcNotLeader, id: 3, body: bytes.Repeat([]byte{9}, 200)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wire := encodeFrame(t, tc.f)
			r := bufio.NewReader(bytes.NewReader(wire))
			got, err := readFrame(r)
			if err != nil {
				t.Fatalf("readFrame: %v", err)
			}
			if got.typ != tc.f.typ || got.id != tc.f.id || !bytes.Equal(got.body, tc.f.body) {
				t.Fatalf("got {%d %d %d bytes}, want {%d %d %d bytes}", got.typ, got.id, len(got.body), tc.f.typ, tc.f.id, len(tc.f.body))
			}
			if _, err := readFrame(r); err != io.EOF {
				t.Fatalf("after the only frame: %v, want io.EOF", err)
			}
		})
	}
}

// Frames written back to back are read back in order from one stream (the
// pipelined connection).
func TestReadFrame_Stream(t *testing.T) {
	t.Parallel()
	var wire bytes.Buffer
	var want []frame
	for i := range 50 {
		f := frame{typ: byte(i % 7), id: uint64(i * 1000), body: bytes.Repeat([]byte{byte(i)}, i*37)}
		want = append(want, f)
		if err := writeFrame(&wire, f); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&wire)
	for i, w := range want {
		got, err := readFrame(r)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got.typ != w.typ || got.id != w.id || !bytes.Equal(got.body, w.body) {
			t.Fatalf("frame %d: got {%d %d %d bytes}, want {%d %d %d bytes}", i, got.typ, got.id, len(got.body), w.typ, w.id, len(w.body))
		}
	}
}

func TestReadFrame_Truncated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    frame
	}{
		{"no body", frame{typ: rpcStats, id: 5}},
		{"body", frame{typ: rpcForward, id: 300, body: []byte("some batch bytes")}},
		{"long body", frame{typ: rpcForward, id: 1 << 40, body: bytes.Repeat([]byte("y"), 5000)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wire := encodeFrame(t, tc.f)
			for cut := 0; cut < len(wire); cut++ {
				_, err := readFrame(bufio.NewReader(bytes.NewReader(wire[:cut])))
				// A cut right after the length prefix reads as io.EOF
				// (io.ReadFull of nothing); either way the frame is refused.
				switch {
				case cut == 0 && err != io.EOF:
					t.Fatalf("empty input: %v, want io.EOF", err)
				case cut > 0 && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF):
					t.Fatalf("first %d of %d bytes: %v, want io.ErrUnexpectedEOF or io.EOF", cut, len(wire), err)
				}
			}
		})
	}
}

// TestReadFrame_Malformed is not parallel: it measures what the process
// allocates (runtime.MemStats), which other tests would add to.
func TestReadFrame_Malformed(t *testing.T) {
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	tests := []struct {
		name  string
		input []byte
		want  string
	}{
		{"length 0", uv(0), "frame of 0 bytes"},
		{"length 1: a type but no id", append(uv(1), rpcStats), "frame of 1 bytes"},
		{"length over the limit", append(uv(maxRPCFrame+1), 1, 0), fmt.Sprintf("frame of %d bytes", maxRPCFrame+1)},
		{"length 2^64-1", append(uv(math.MaxUint64), 1, 0), "frame of 18446744073709551615 bytes"},
		{"length varint overflows", bytes.Repeat([]byte{0xff}, 11), "overflow"},
		{"id varint cut by the frame length", []byte{2, rpcStats, 0x80}, "bad request id"},
		{"id varint overflows", append(append(uv(12), rpcStats), bytes.Repeat([]byte{0xff}, 11)...), "bad request id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := readFrame(bufio.NewReader(bytes.NewReader(tc.input)))
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("readFrame(%x) = %v, want an error containing %q", tc.input, err, tc.want)
			}
			// A length over the limit is refused before anything is
			// allocated for it.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("refusing %q allocated %d bytes", tc.name, grew)
			}
		})
	}
}

func TestReadFrame_LimitIsInclusive(t *testing.T) {
	t.Parallel()
	body := make([]byte, maxRPCFrame-2) // 1 type byte + 1 id byte + body = the limit
	wire := encodeFrame(t, frame{typ: rpcForward, id: 9, body: body})
	f, err := readFrame(bufio.NewReader(bytes.NewReader(wire)))
	if err != nil || f.id != 9 || len(f.body) != len(body) {
		t.Fatalf("frame of exactly maxRPCFrame bytes: id %d, %d body bytes, %v", f.id, len(f.body), err)
	}
}

func TestWriteFrame_WriteError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	for _, failAt := range []int{1, 2} { // the header write, then the body write
		w := &failingWriter{failAt: failAt, err: boom}
		if err := writeFrame(w, frame{typ: rpcForward, id: 1, body: []byte("b")}); !errors.Is(err, boom) {
			t.Errorf("write #%d failing: writeFrame = %v, want boom", failAt, err)
		}
	}
}

type failingWriter struct {
	n, failAt int
	err       error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.n++
	if w.n == w.failAt {
		return 0, w.err
	}
	return len(p), nil
}

func TestDecodeResults_RoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		res  []fsm.Result
	}{
		{"none", []fsm.Result{}},
		{"one", []fsm.Result{{Cursor: fsm.Cursor{Index: 10, Offset: 0}}}},
		{"duplicate", []fsm.Result{{Cursor: fsm.Cursor{Index: 3, Offset: 1}, Duplicate: true}}},
		{"outcome errors", []fsm.Result{
			{Cursor: fsm.Cursor{Index: 5, Offset: 0}, Err: fsm.ErrUnknownConnection},
			{Cursor: fsm.Cursor{Index: 5, Offset: 1}, Err: fsm.ErrConnectionExists},
			{Cursor: fsm.Cursor{Index: 5, Offset: 2}},
		}},
		{"extremes", []fsm.Result{
			{Cursor: fsm.Cursor{Index: math.MaxUint64, Offset: math.MaxUint32}, Duplicate: true, Err: fsm.ErrUnknownConnection},
			{Cursor: fsm.Cursor{}},
		}},
		{"a full batch", func() []fsm.Result {
			out := make([]fsm.Result, 256)
			for i := range out {
				out[i] = fsm.Result{Cursor: fsm.Cursor{Index: 1 << 33, Offset: uint32(i)}, Duplicate: i%3 == 0}
			}
			return out
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeResults(encodeResults(tc.res))
			if err != nil {
				t.Fatalf("decodeResults: %v", err)
			}
			if !reflect.DeepEqual(got, tc.res) {
				t.Fatalf("got %+v, want %+v", got, tc.res)
			}
		})
	}
}

func TestDecodeResults_Malformed(t *testing.T) {
	t.Parallel()
	valid := encodeResults([]fsm.Result{{Cursor: fsm.Cursor{Index: 300, Offset: 2}}, {Cursor: fsm.Cursor{Index: 301}}})
	uv := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	tests := []struct {
		name  string
		input []byte
	}{
		{"empty", nil},
		{"count varint cut", []byte{0x80}},
		{"count varint overflows", bytes.Repeat([]byte{0xff}, 11)},
		{"count over the input size", uv(1 << 40)},
		{"one announced, none there", uv(1)},
		{"index cut", append(uv(1), 0x80)},
		{"offset missing", uv(1, 7)},
		{"offset over 32 bits", append(uv(1, 7, 1<<32), 0, 0)},
		{"outcome and dup bytes missing", uv(1, 7, 0)},
		{"dup byte missing", append(uv(1, 7, 0), 0)},
		{"unknown outcome code", append(uv(1, 7, 0), 99, 0)},
		{"trailing byte", append(append([]byte(nil), valid...), 0)},
		{"second result cut", valid[:len(valid)-1]},
		{"count says three", append(uv(3), valid[1:]...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if res, err := decodeResults(tc.input); err == nil {
				t.Fatalf("decodeResults(%x) = %+v, want an error", tc.input, res)
			}
		})
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, fr := range []frame{
		{typ: rpcForward, id: 1, body: fsm.EncodeBatch([]fsm.Command{testCommand("x")})},
		{typ: rpcStats, id: 2},
		{typ: rpcForwardOK, id: 1 << 20, body: encodeResults([]fsm.Result{{Cursor: fsm.Cursor{Index: 4}}})},
		{typ: rpcFailed, id: math.MaxUint64, body: []byte("msg")},
	} {
		f.Add(encodeFrame(f, fr))
	}
	f.Add([]byte{})
	f.Add([]byte{2, 1, 0x80})
	f.Add(binary.AppendUvarint(nil, maxRPCFrame))
	f.Add(binary.AppendUvarint(nil, maxRPCFrame+1))
	f.Fuzz(func(t *testing.T, data []byte) {
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		r := bufio.NewReader(bytes.NewReader(data))
		var frames []frame
		for {
			fr, err := readFrame(r)
			if err != nil {
				break
			}
			frames = append(frames, fr)
			if len(frames) > len(data) {
				t.Fatalf("%d frames from %d bytes", len(frames), len(data))
			}
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		// Network bytes can make a reader allocate at most one frame's
		// limit beyond what they carry (plus the bufio buffer and slack).
		if grew := after.TotalAlloc - before.TotalAlloc; grew > maxRPCFrame+uint64(8*len(data))+1<<20 {
			t.Fatalf("reading %d bytes allocated %d bytes", len(data), grew)
		}
		for _, fr := range frames {
			again, err := readFrame(bufio.NewReader(bytes.NewReader(encodeFrame(t, fr))))
			if err != nil || again.typ != fr.typ || again.id != fr.id || !bytes.Equal(again.body, fr.body) {
				t.Fatalf("frame {%d %d %x} does not survive a round trip: {%d %d %x} %v",
					fr.typ, fr.id, fr.body, again.typ, again.id, again.body, err)
			}
		}
	})
}

func FuzzDecodeResults(f *testing.F) {
	f.Add(encodeResults(nil))
	f.Add(encodeResults([]fsm.Result{{Cursor: fsm.Cursor{Index: 1}}, {Cursor: fsm.Cursor{Index: 2, Offset: 1}, Duplicate: true, Err: fsm.ErrConnectionExists}}))
	f.Add([]byte{1, 7, 0, 99, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := decodeResults(data)
		if err != nil {
			return
		}
		// Every result takes at least four bytes, so the output is bounded
		// by the input.
		if len(res) > len(data)/4 {
			t.Fatalf("%d results from %d bytes", len(res), len(data))
		}
		again, err := decodeResults(encodeResults(res))
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", res, err)
		}
		if !reflect.DeepEqual(again, res) {
			t.Fatalf("round trip: got %+v, want %+v", again, res)
		}
	})
}
