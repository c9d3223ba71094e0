package hub

import (
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
)

func TestServer_Handshake(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)

	tests := []struct {
		name   string
		frames []string
		want   string // the exact handshake response record
		wantOK bool
	}{
		{name: "json v1", frames: []string{`{"protocol":"json","version":1}` + "\x1e"}, want: `{}`, wantOK: true},
		{name: "json v2", frames: []string{`{"protocol":"json","version":2}` + "\x1e"}, want: `{}`, wantOK: true},
		{name: "split across frames", frames: []string{`{"protocol":"js`, `on","version":1}` + "\x1e"}, want: `{}`, wantOK: true},
		{name: "unknown protocol", frames: []string{`{"protocol":"blazorpack","version":1}` + "\x1e"},
			want: `{"error":"The protocol 'blazorpack' is not supported."}`},
		{name: "version 3", frames: []string{`{"protocol":"json","version":3}` + "\x1e"},
			want: `{"error":"The server does not support version 3 of the 'json' protocol."}`},
		{name: "garbage", frames: []string{"hello there\x1e"}},
		{name: "not an object", frames: []string{`[1,2]` + "\x1e"}},
		{name: "missing version", frames: []string{`{"protocol":"json"}` + "\x1e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, st, err := h.dial(testHubName, "", nil)
			if err != nil {
				t.Fatalf("dial (status %d): %v", st, err)
			}
			for _, f := range tt.frames {
				c.sendRaw(f)
			}
			got := c.first()
			if tt.want != "" && got.Raw != tt.want {
				t.Fatalf("handshake response %s, want %s", got.Raw, tt.want)
			}
			if tt.wantOK {
				if got.Error != "" {
					t.Fatalf("handshake failed: %s", got.Raw)
				}
				c.callOK("Broadcast", "after-handshake")
				c.waitInvocations("after-handshake", 1)
				c.checkFraming()
				return
			}
			if got.Error == "" || got.Type != 0 {
				t.Fatalf("handshake response %s, want {\"error\":...}", got.Raw)
			}
			c.waitDone()
			if n := len(c.messages()); n != 1 {
				t.Errorf("received %d records after a failed handshake, want only the error: %s", n, c.dump())
			}
		})
	}

	t.Run("handshake and invocation in one frame", func(t *testing.T) {
		c, st, err := h.dial(testHubName, "", nil)
		if err != nil {
			t.Fatalf("dial (status %d): %v", st, err)
		}
		c.sendRaw(`{"protocol":"json","version":1}` + "\x1e" + invocationRecord("1", "Broadcast", "same-frame", 42))
		if got := c.first(); got.Raw != "{}" {
			t.Fatalf("handshake response %s, want {}", got.Raw)
		}
		done := c.completion("1")
		if done.Error != "" {
			t.Fatalf("invocation in the handshake frame failed: %s", done.Raw)
		}
		cur := resultCursor(t, done)
		got := c.waitInvocations("same-frame", 1)
		if want := invocationRaw("same-frame", "[42]", cur); got[0].Raw != want {
			t.Fatalf("got %s, want %s", got[0].Raw, want)
		}
	})
}

func TestServer_HandshakeTimeout(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	c, st, err := h.dial(testHubName, "", nil)
	if err != nil {
		t.Fatalf("dial (status %d): %v", st, err)
	}
	// The outcome, not the time: the server ends a connection that sent
	// nothing (waitDone fails if it is still open after testWait, well
	// before the default HandshakeTimeout would end it).
	c.waitDone()
	for _, m := range c.messages() {
		if m.Raw == "{}" {
			t.Fatalf("a client that never handshook got a success response")
		}
	}
	waitFor(t, "the server to forget the connection", func() bool { return h.srv.LocalConnections() == 0 })
	if n := len(h.pub.commands(fsm.KindConnOpen)); n != 0 {
		t.Errorf("%d ConnOpen commands for a connection that never handshook", n)
	}
}

func TestServer_KeepAlive(t *testing.T) {
	t.Parallel()
	h := newTestHub(t, func(c *Config) { c.KeepAliveInterval = 100 * time.Millisecond })
	c := h.connect(testHubName, "idle")
	c.waitMsg("two pings", func(msgs []wireMsg) bool {
		n := 0
		for _, m := range msgs {
			if m.Type == typePing {
				n++
				if m.Raw != `{"type":6}` {
					t.Errorf("ping record %s, want {\"type\":6}", m.Raw)
				}
			}
		}
		return n >= 2
	})
	c.checkFraming()
}

func TestServer_ClientTimeout(t *testing.T) {
	t.Parallel()

	t.Run("silent client is closed", func(t *testing.T) {
		t.Parallel()
		h := newTestHub(t, func(c *Config) {
			c.KeepAliveInterval = 100 * time.Millisecond
			c.ClientTimeout = 300 * time.Millisecond
			c.DisconnectTimeout = 200 * time.Millisecond // then it is closed in the log
		})
		c := h.connect(testHubName, "silent")
		c.waitDone()
		waitFor(t, "the ConnClose of the timed-out connection", func() bool {
			_, ok := h.m.Connection(testHubName, c.connID)
			return !ok
		})
		waitFor(t, "the server to drop the connection", func() bool { return h.srv.LocalConnections() == 0 })
	})

	t.Run("pinging client stays", func(t *testing.T) {
		t.Parallel()
		// The margin between pings (50ms) and the timeout (1s) is wide so
		// a loaded -race run cannot stall past it.
		h := newTestHub(t, func(c *Config) {
			c.KeepAliveInterval = 100 * time.Millisecond
			c.ClientTimeout = time.Second
		})
		c := h.connect(testHubName, "chatty")
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		end := time.Now().Add(3 * h.cfg.ClientTimeout)
		for time.Now().Before(end) {
			<-tick.C
			if c.isDone() {
				t.Fatalf("a client that pings every 50ms was closed; received %s", c.dump())
			}
			c.sendRaw(`{"type":6}` + "\x1e")
		}
		c.callOK("Broadcast", "alive")
		c.waitInvocations("alive", 1)
	})
}
