package hub

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/raftplane/raftplane/fsm"
	"github.com/vmihailenco/msgpack/v5"
)

// ---------------------------------------------------------------------------
// Test builders

// hx decodes space-separated hex ("02 91 06").
func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// kv and omap build MessagePack maps with a chosen key order (and key type).
type kv struct {
	k, v any
}
type omap []kv

// rawMP is already-encoded MessagePack, written as is.
type rawMP []byte

// mpb encodes v with the library, element by element: []any is an array,
// omap an ordered map, []byte bin, rawMP raw bytes.
func mpb(v any) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	var walk func(v any)
	walk = func(v any) {
		var err error
		switch x := v.(type) {
		case nil:
			err = enc.EncodeNil()
		case bool:
			err = enc.EncodeBool(x)
		case int:
			err = enc.EncodeInt(int64(x))
		case int64:
			err = enc.EncodeInt(x)
		case uint64:
			err = enc.EncodeUint(x)
		case float32:
			err = enc.EncodeFloat32(x)
		case float64:
			err = enc.EncodeFloat64(x)
		case string:
			err = enc.EncodeString(x)
		case []byte:
			err = enc.EncodeBytes(x)
		case rawMP:
			buf.Write(x)
		case []any:
			err = enc.EncodeArrayLen(len(x))
			for _, e := range x {
				walk(e)
			}
		case omap:
			err = enc.EncodeMapLen(len(x))
			for _, e := range x {
				walk(e.k)
				walk(e.v)
			}
		default:
			err = enc.Encode(x)
		}
		if err != nil {
			panic(err)
		}
	}
	walk(v)
	return buf.Bytes()
}

// appendInvocation writes a server's JSON Invocation, as the dispatcher
// does for a JSON connection.
func appendInvocation(dst []byte, target string, args json.RawMessage, cursor string) []byte {
	return jsonProtocol{}.appendInvocation(dst, target, args, cursor)
}

// The result kinds of a MessagePack Completion (HubProtocol.md).
const (
	resultError = 1
	resultValue = 3
)

// framed prefixes body with its VarInt length, using encoding/binary's
// Uvarint (the same LEB128 encoding) as an independent reference.
func framed(body []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(body))), body...)
}

// ---------------------------------------------------------------------------
// The hub's hooks onto package signalr

func TestProtocolHooks(t *testing.T) {
	t.Parallel()
	if _, ok := protocolByName("json").(jsonProtocol); !ok {
		t.Error("json")
	}
	if _, ok := protocolByName("messagepack").(msgpackProtocol); !ok {
		t.Error("messagepack")
	}
	if protocolByName("blazorpack") != nil || protocolByName("MessagePack") != nil {
		t.Error("unknown protocols must be nil")
	}
	// The splitter of each protocol is that protocol's: a MessagePack one
	// reads a length prefix, a JSON one splits on 0x1E.
	for _, tt := range []struct {
		name string
		in   []byte
		want string
	}{
		{"messagepack", hx("01 06 02"), "06"},
		{"json", []byte("ab\x1ec"), "ab"},
	} {
		var got []string
		newSplitter(tt.name, 10).feed(tt.in, func(rec []byte, _ recordInfo) { got = append(got, string(rec)) })
		if tt.name == "messagepack" && len(got) == 1 {
			got[0] = fmt.Sprintf("%02x", got[0])
		}
		if len(got) != 1 || got[0] != tt.want {
			t.Errorf("%s splitter: %q, want [%q]", tt.name, got, tt.want)
		}
	}
	m, err := parseRecord(msgpackProtocol{}, hx("91 06"))
	if err != nil || m.Type != typePing {
		t.Errorf("parseRecord msgpack: %+v %v", m, err)
	}
	m, err = parseRecord(jsonProtocol{}, []byte(`{"type":6}`))
	if err != nil || m.Type != typePing {
		t.Errorf("parseRecord json: %+v %v", m, err)
	}
	if id, ok := scanRecordInvocationID(msgpackProtocol{}, hx("95 01 80 a1 37")); id != "7" || !ok {
		t.Errorf("scan msgpack: %q %v", id, ok)
	}
	if id, ok := scanRecordInvocationID(jsonProtocol{}, []byte(`{"invocationId":"7",`)); id != "7" || !ok {
		t.Errorf("scan json: %q %v", id, ok)
	}
	if !canBinary(&wsReader{binary: true}) || canBinary(&wsReader{}) {
		t.Error("canBinary(wsReader)")
	}
	tr := &wsTransport{}
	setBinaryFrames(tr, true)
	if !tr.binary {
		t.Error("setBinaryFrames(wsTransport)")
	}
	setBinaryFrames(newGateTransport(false), true) // no binary frames: a no-op
}

func TestCheckHandshake_Protocols(t *testing.T) {
	t.Parallel()
	s := &Server{}
	tests := []struct {
		h       handshakeRequest
		binary  bool
		want    protocol
		wantErr string
	}{
		{handshakeRequest{Protocol: "json", Version: 1}, false, jsonProtocol{}, ""},
		{handshakeRequest{Protocol: "json", Version: 2}, true, jsonProtocol{}, ""},
		{handshakeRequest{Protocol: "messagepack", Version: 1}, true, msgpackProtocol{}, ""},
		{handshakeRequest{Protocol: "messagepack", Version: 2}, true, msgpackProtocol{}, ""},
		{handshakeRequest{Protocol: "messagepack", Version: 3}, true, nil, "The server does not support version 3 of the 'messagepack' protocol."},
		{handshakeRequest{Protocol: "messagepack", Version: 1}, false, nil, "Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format."},
		{handshakeRequest{Protocol: "blazorpack", Version: 1}, true, nil, "The protocol 'blazorpack' is not supported."},
	}
	for _, tt := range tests {
		p, err := s.checkHandshake(tt.h, tt.binary)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%+v binary=%v: %v, want %q", tt.h, tt.binary, err, tt.wantErr)
			}
			continue
		}
		if err != nil || p != tt.want {
			t.Errorf("%+v binary=%v: %v %v, want %v", tt.h, tt.binary, p, err, tt.want)
		}
	}
}

// ---------------------------------------------------------------------------
// Dispatcher: one encoding per protocol per message.

func TestDeliver_EncodesOncePerProtocol(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	m := newTestMachine(t)
	srv, err := New(cfg, newFakePublisher(t, m, true), m) // not started: deliver is called by hand
	if err != nil {
		t.Fatal(err)
	}
	var conns []*conn
	for i, p := range []protocol{jsonProtocol{}, msgpackProtocol{}, jsonProtocol{}, msgpackProtocol{}} {
		c := srv.newConn(nil, fmt.Sprintf("c%d", i), testHubName, "", newGateTransport(false))
		c.setProtocol(p)
		srv.conns[c.id] = c
		srv.deliver(&fsm.Entry{Command: fsm.Command{Kind: fsm.KindConnOpen, ID: c.openID, Hub: testHubName, Conn: c.id, Node: cfg.NodeID}}, testEpoch, nil)
		conns = append(conns, c)
	}
	args := `["hi",{"b":2,"a":1}]`
	e := &fsm.Entry{Cursor: fsm.Cursor{Index: 7, Offset: 1}, Command: publishCmd(testHubName, fsm.AudienceAll, "", "say", []byte(args), []string{})}
	srv.deliver(e, testEpoch, make([]byte, 0, 8))
	cur := e.Cursor.Format(testEpoch)
	frames := make([][]byte, len(conns))
	for i, c := range conns {
		c.mu.Lock()
		if len(c.queue) != 1 {
			c.mu.Unlock()
			t.Fatalf("conn %d: %d queued frames", i, len(c.queue))
		}
		frames[i] = c.queue[0].b
		c.mu.Unlock()
	}
	wantJSON := invocationRaw("say", args, cur) + "\x1e"
	wantMP := framed(mpb([]any{1, omap{{"cursor", cur}}, nil, "say", []any{"hi", omap{{"b", 2}, {"a", 1}}}, []any{}}))
	if string(frames[0]) != wantJSON || string(frames[2]) != wantJSON {
		t.Errorf("JSON frames %q %q, want %q", frames[0], frames[2], wantJSON)
	}
	if !bytes.Equal(frames[1], wantMP) || !bytes.Equal(frames[3], wantMP) {
		t.Errorf("MessagePack frames % x / % x, want % x", frames[1], frames[3], wantMP)
	}
	// Same bytes, not equal copies: each protocol was encoded once.
	if &frames[0][0] != &frames[2][0] || &frames[1][0] != &frames[3][0] {
		t.Error("recipients of the same protocol got separately encoded frames")
	}
}

// ---------------------------------------------------------------------------
// End to end over loopback: a raw MessagePack client.

type mpClient struct {
	t      *testing.T
	ws     *websocket.Conn
	connID string
	nextID int

	mu         sync.Mutex
	handshake  string   // the first frame
	bodies     [][]byte // every message received after the handshake, without prefix
	textFrames int      // text frames after the handshake (must stay 0)
	rawFrames  [][]byte // every frame after the handshake
	partial    bool     // a frame that did not hold whole messages
	readErr    error
	bell       chan struct{}
	done       chan struct{}
}

// connectMsgpack negotiates, opens the WebSocket and does the MessagePack
// handshake (version 1). extra is sent in the same frame after it.
func connectMsgpack(t *testing.T, h *testHub, extra []byte) *mpClient {
	t.Helper()
	n := h.negotiateOK(testHubName, "negotiateVersion=1", nil)
	d := websocket.Dialer{HandshakeTimeout: testWait}
	ws, _, err := d.Dial(h.wsURL(testHubName, url.Values{"id": {*n.ConnectionToken}}.Encode()), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := &mpClient{t: t, ws: ws, connID: n.ConnectionID, bell: make(chan struct{}, 1), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() {
		_ = c.ws.Close()
		<-c.done
	})
	// The JS client sends the handshake as a text frame even for msgpack.
	c.send(websocket.TextMessage, append([]byte(`{"protocol":"messagepack","version":1}`+"\x1e"), extra...))
	c.wait("the handshake response", func() bool { return c.handshake != "" })
	c.mu.Lock()
	hs := c.handshake
	c.mu.Unlock()
	if hs != "{}\x1e" {
		t.Fatalf("handshake response %q", hs)
	}
	return c
}

func (c *mpClient) readLoop() {
	defer close(c.done)
	first := true
	for {
		typ, p, err := c.ws.ReadMessage()
		c.mu.Lock()
		if err != nil {
			c.readErr = err
			c.mu.Unlock()
			c.ring()
			return
		}
		if first {
			first = false
			c.handshake = string(p)
			c.mu.Unlock()
			c.ring()
			continue
		}
		c.rawFrames = append(c.rawFrames, p)
		if typ != websocket.BinaryMessage {
			c.textFrames++
		}
		for len(p) > 0 {
			// encoding/binary's Uvarint: an independent VarInt decoder.
			n, k := binary.Uvarint(p)
			if k <= 0 || uint64(len(p)-k) < n {
				c.partial = true
				break
			}
			c.bodies = append(c.bodies, p[k:k+int(n)])
			p = p[k+int(n):]
		}
		c.mu.Unlock()
		c.ring()
	}
}

func (c *mpClient) ring() {
	select {
	case c.bell <- struct{}{}:
	default:
	}
}

func (c *mpClient) send(typ int, p []byte) {
	c.t.Helper()
	_ = c.ws.SetWriteDeadline(time.Now().Add(testWait))
	if err := c.ws.WriteMessage(typ, p); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// wait waits for cond, evaluated under c.mu.
func (c *mpClient) wait(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, err := cond(), c.readErr
		n := len(c.bodies)
		c.mu.Unlock()
		if ok {
			return
		}
		if err != nil {
			c.t.Fatalf("connection ended (%v) while waiting for %s; %d messages received", err, what, n)
		}
		select {
		case <-c.bell:
		case <-deadline.C:
			c.t.Fatalf("timed out waiting for %s; %d messages received", what, n)
		}
	}
}

// decoded decodes a body with the library's generic decoder.
func decoded(t testing.TB, body []byte) []any {
	t.Helper()
	var v []any
	if err := msgpack.Unmarshal(body, &v); err != nil {
		t.Fatalf("decoding % x: %v", body, err)
	}
	return v
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		return int64(x)
	}
	return -1
}

// tryDecode is decoded without failing the test (for use under c.mu):
// nil when the body does not decode to a non-empty array.
func tryDecode(body []byte) []any {
	var v []any
	if err := msgpack.Unmarshal(body, &v); err != nil || len(v) == 0 {
		return nil
	}
	return v
}

// find waits for the first message body matching pred and returns it.
// Bodies that do not decode are reported once the wait is over.
func (c *mpClient) find(what string, pred func(v []any) bool) []byte {
	c.t.Helper()
	var got []byte
	c.wait(what, func() bool {
		for _, b := range c.bodies {
			if v := tryDecode(b); v != nil && pred(v) {
				got = b
				return true
			}
		}
		return false
	})
	c.mu.Lock()
	bodies := append([][]byte(nil), c.bodies...)
	c.mu.Unlock()
	for _, b := range bodies {
		decoded(c.t, b)
	}
	return got
}

// invoke sends [1, {}, id, target, args] and returns the id.
func (c *mpClient) invoke(target string, args ...any) string {
	c.t.Helper()
	c.nextID++
	id := strconv.Itoa(c.nextID)
	c.send(websocket.BinaryMessage, framed(mpb([]any{1, omap{}, id, target, append([]any{}, args...)})))
	return id
}

// completion waits for the Completion of id and returns it decoded.
func (c *mpClient) completion(id string) []any {
	c.t.Helper()
	b := c.find("the completion of "+id, func(v []any) bool {
		return len(v) >= 4 && asInt(v[0]) == typeCompletion && v[2] == id
	})
	return decoded(c.t, b)
}

// callOK invokes and requires a value Completion holding a cursor string.
func (c *mpClient) callOK(target string, args ...any) string {
	c.t.Helper()
	v := c.completion(c.invoke(target, args...))
	if len(v) != 5 || asInt(v[3]) != resultValue {
		c.t.Fatalf("%s: completion %#v, want a result", target, v)
	}
	if h, ok := v[1].(map[string]any); !ok || len(h) != 0 {
		c.t.Fatalf("%s: completion headers %#v", target, v[1])
	}
	cur, ok := v[4].(string)
	if !ok {
		c.t.Fatalf("%s: result %#v is not a string", target, v[4])
	}
	mustCursor(c.t, cur)
	return cur
}

// callErr invokes and requires an error Completion containing want.
func (c *mpClient) callErr(want, id string, frame []byte) {
	c.t.Helper()
	c.send(websocket.BinaryMessage, frame)
	v := c.completion(id)
	if len(v) != 5 || asInt(v[3]) != resultError {
		c.t.Fatalf("completion %#v, want an error", v)
	}
	if s, _ := v[4].(string); !strings.Contains(s, want) {
		c.t.Fatalf("completion error %q, want one containing %q", s, want)
	}
}

// invocation waits for an Invocation of target and returns its body.
func (c *mpClient) invocation(target string) []byte {
	c.t.Helper()
	return c.find("an invocation of "+target, func(v []any) bool {
		return len(v) >= 5 && asInt(v[0]) == typeInvocation && v[3] == target
	})
}

// invocationParts splits an Invocation body into its raw elements.
func invocationParts(t testing.TB, body []byte) (headers map[string]string, id any, target string, args []byte) {
	t.Helper()
	d := msgpack.NewDecoder(bytes.NewReader(body))
	n, err := d.DecodeArrayLen()
	if err != nil || n != 6 {
		t.Fatalf("invocation % x: %d elements (%v), want 6 (streamIds last, as ASP.NET Core writes)", body, n, err)
	}
	if typ, _ := d.DecodeInt(); typ != typeInvocation {
		t.Fatalf("type %d", typ)
	}
	if err := d.Decode(&headers); err != nil {
		t.Fatal(err)
	}
	if id, err = d.DecodeInterface(); err != nil {
		t.Fatal(err)
	}
	if target, err = d.DecodeString(); err != nil {
		t.Fatal(err)
	}
	raw, err := d.DecodeRaw()
	if err != nil {
		t.Fatal(err)
	}
	return headers, id, target, raw
}

func (c *mpClient) checkFraming() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.textFrames > 0 {
		c.t.Errorf("%d text frames after the handshake, want binary only", c.textFrames)
	}
	if c.partial {
		c.t.Errorf("a frame did not hold whole messages")
	}
}

func TestMsgpack_EndToEnd(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	j := h.connect(testHubName, "")
	m := connectMsgpack(t, h, nil)

	j.callOK("JoinGroup", "room")
	m.callOK("JoinGroup", "room")

	// From the MessagePack client: both receive it with the cursor header.
	mpArgs := []any{"from-mp", 42, omap{{"b", 1}, {"a", []any{1.5, nil, true}}}, []byte{1, 2, 3}, uint64(math.MaxUint64)}
	c1 := m.callOK("SendToGroup", append([]any{"room", "say"}, mpArgs...)...)
	wantJSON := `["from-mp",42,{"b":1,"a":[1.5,null,true]},"AQID",18446744073709551615]`
	got := j.waitInvocations("say", 1)
	if want := invocationRaw("say", wantJSON, c1); got[0].Raw != want {
		t.Fatalf("JSON client got %s, want %s", got[0].Raw, want)
	}
	hdr, id, target, args := invocationParts(t, m.invocation("say"))
	if hdr["cursor"] != c1 || len(hdr) != 1 || id != nil || target != "say" {
		t.Fatalf("msgpack client got headers %v id %v target %q, want cursor %s", hdr, id, target, c1)
	}
	// bin comes back as its base64 string: JSON in the log has no binary.
	wantArgs := mpb([]any{"from-mp", 42, omap{{"b", 1}, {"a", []any{1.5, nil, true}}}, "AQID", uint64(math.MaxUint64)})
	if !bytes.Equal(args, wantArgs) {
		t.Fatalf("msgpack client args % x, want % x", args, wantArgs)
	}

	// From the JSON client: both receive it, the MessagePack one as msgpack.
	c2 := j.callOK("SendToGroup", "room", "news", "from-json", json.RawMessage(`{"z":1,"y":[2.5,-3]}`), 12345678901234)
	if c2 == c1 {
		t.Fatal("two sends got the same cursor")
	}
	if got := j.waitInvocations("news", 1); got[0].Raw != invocationRaw("news", `["from-json",{"z":1,"y":[2.5,-3]},12345678901234]`, c2) {
		t.Fatalf("JSON client got %s", got[0].Raw)
	}
	hdr, _, _, args = invocationParts(t, m.invocation("news"))
	if hdr["cursor"] != c2 {
		t.Fatalf("cursor header %v, want %s", hdr, c2)
	}
	if want := mpb([]any{"from-json", omap{{"z", 1}, {"y", []any{2.5, -3}}}, int64(12345678901234)}); !bytes.Equal(args, want) {
		t.Fatalf("msgpack client args % x, want % x", args, want)
	}

	// Errors come back as Completion errors, and the connection stays up.
	m.callErr("Unknown hub method 'NoSuchMethod'", "e1", framed(mpb([]any{1, omap{}, "e1", "NoSuchMethod", []any{}})))
	m.callErr("unsupported argument type", "e2",
		framed(mpb([]any{1, omap{}, "e2", "Broadcast", []any{"t", omap{{1, "int key"}}}})))
	m.callErr("must be a string", "e3", framed(mpb([]any{1, omap{}, "e3", "JoinGroup", []any{7}})))
	big := strings.Repeat("x", h.cfg.MaxMessageSize+10)
	m.callErr("exceeds the maximum message size", "big",
		framed(mpb([]any{1, omap{}, "big", "Broadcast", []any{"t", big}})))
	// A fire-and-forget send gets no reply; a ping and a message in one frame.
	two := append(framed(mpb([]any{1, omap{}, nil, "Broadcast", []any{"ff", "x"}})), hx("02 91 06")...)
	m.send(websocket.BinaryMessage, two)
	c3 := m.callOK("Broadcast", "after-errors")
	hdr, _, _, _ = invocationParts(t, m.invocation("after-errors"))
	if hdr["cursor"] != c3 {
		t.Fatalf("cursor header %v, want %s", hdr, c3)
	}
	m.invocation("ff")
	j.waitInvocations("after-errors", 1)
	m.mu.Lock()
	bodies := append([][]byte(nil), m.bodies...)
	m.mu.Unlock()
	for _, b := range bodies {
		if v := decoded(t, b); asInt(v[0]) == typeCompletion && len(v) > 2 && v[2] == nil {
			t.Errorf("a completion for the fire-and-forget send: %v", v)
		}
	}
	m.checkFraming()
	j.checkFraming()
}

func TestMsgpack_HandshakeFrame(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)

	t.Run("messages in the handshake frame", func(t *testing.T) {
		// The bytes after the handshake's 0x1E go to the binary splitter.
		extra := append(hx("02 91 06"), framed(mpb([]any{1, omap{}, "1", "Broadcast", []any{"same-frame", 1}}))...)
		m := connectMsgpack(t, h, extra)
		v := m.completion("1")
		if len(v) != 5 || asInt(v[3]) != resultValue {
			t.Fatalf("completion %#v", v)
		}
		hdr, _, _, args := invocationParts(t, m.invocation("same-frame"))
		if hdr["cursor"] != v[4] || !bytes.Equal(args, mpb([]any{1})) {
			t.Fatalf("invocation headers %v args % x", hdr, args)
		}
		m.checkFraming()
	})
	t.Run("oversized message in the handshake frame", func(t *testing.T) {
		big := framed(mpb([]any{1, omap{}, "big", "Broadcast", []any{"t", strings.Repeat("x", h.cfg.MaxMessageSize)}}))
		m := connectMsgpack(t, h, big)
		v := m.completion("big")
		if s, _ := v[4].(string); asInt(v[3]) != resultError || !strings.Contains(s, "exceeds the maximum message size") {
			t.Fatalf("completion %#v", v)
		}
		m.callOK("Broadcast", "t", "still up")
	})
	t.Run("versions", func(t *testing.T) {
		for _, tt := range []struct {
			v    int
			want string
		}{
			{2, "{}\x1e"},
			{3, `{"error":"The server does not support version 3 of the 'messagepack' protocol."}` + "\x1e"},
		} {
			n := h.negotiateOK(testHubName, "negotiateVersion=1", nil)
			ws, _, err := websocket.DefaultDialer.Dial(h.wsURL(testHubName, "id="+url.QueryEscape(*n.ConnectionToken)), nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"protocol":"messagepack","version":%d}`+"\x1e", tt.v)))
			_ = ws.SetReadDeadline(time.Now().Add(testWait))
			_, p, err := ws.ReadMessage()
			if err != nil || string(p) != tt.want {
				t.Fatalf("version %d: %q %v, want %q", tt.v, p, err, tt.want)
			}
			ws.Close()
		}
	})
}

func TestMsgpack_PingAndBadPrefix(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.KeepAliveInterval = 100 * time.Millisecond })
	m := connectMsgpack(t, h, nil)
	m.wait("a ping frame", func() bool {
		for _, f := range m.rawFrames {
			if bytes.Equal(f, hx("02 91 06")) {
				return true
			}
		}
		return false
	})
	// A length prefix over 2 GB: the stream cannot be resynchronised, so
	// the server sends Close with an error and ends the connection.
	m.send(websocket.BinaryMessage, hx("ff ff ff ff 08 00"))
	b := m.find("a Close message", func(v []any) bool { return asInt(v[0]) == typeClose })
	v := decoded(t, b)
	if len(v) != 3 || v[2] != false {
		t.Fatalf("close %#v, want [7, error, false]", v)
	}
	if s, _ := v[1].(string); !strings.Contains(s, "2GB") {
		t.Fatalf("close error %#v", v[1])
	}
	select {
	case <-m.done:
	case <-time.After(testWait):
		t.Fatal("connection still open after a bad length prefix")
	}
	waitFor(t, "the server to drop the connection", func() bool {
		_, ok := h.m.Connection(testHubName, m.connID)
		return !ok || h.srv.LocalConnections() == 0
	})
	m.checkFraming()
}

// Publishing straight into the log (the REST path) reaches a MessagePack
// client with the cursor header.
func TestMsgpack_LogPublish(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	m := connectMsgpack(t, h, nil)
	cur, err := h.pub.Publish(context.Background(), publishCmd(testHubName, fsm.AudienceAll, "", "rest", []byte(`["extra",{"n":1}]`), nil))
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, _, args := invocationParts(t, m.invocation("rest"))
	if hdr["cursor"] != cur.Format(testEpoch) || !bytes.Equal(args, mpb([]any{"extra", omap{{"n", 1}}})) {
		t.Fatalf("headers %v args % x", hdr, args)
	}
}
