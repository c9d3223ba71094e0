package gossip

import (
	"strings"
	"testing"
	"time"
)

func TestConfig_Validate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.Meta.ID = "n1"
		return c
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("DefaultConfig with an ID: %v", err)
	}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error; "" means valid
	}{
		{"zero config with id", func(c *Config) { *c = Config{Meta: Meta{ID: "n1"}} }, ""},
		{"port 0", func(c *Config) { c.BindAddr = "127.0.0.1:0" }, ""},
		{"ipv6", func(c *Config) { c.BindAddr = "[::1]:7946" }, ""},
		{"wildcard with advertise", func(c *Config) { c.BindAddr = "0.0.0.0:7946"; c.AdvertiseAddr = "10.1.2.3:7946" }, ""},
		{"key 32", func(c *Config) { c.SecretKey = make([]byte, 32) }, ""},
		{"no id", func(c *Config) { c.Meta.ID = "" }, "ID is empty"},
		{"bind hostname", func(c *Config) { c.BindAddr = "localhost:7946" }, `BindAddr "localhost:7946"`},
		{"bind no port", func(c *Config) { c.BindAddr = "127.0.0.1" }, "BindAddr"},
		{"wildcard without advertise", func(c *Config) { c.BindAddr = "0.0.0.0:7946" }, "set AdvertiseAddr"},
		{"advertise wildcard", func(c *Config) { c.AdvertiseAddr = "[::]:7946" }, "AdvertiseAddr \"[::]:7946\" is unspecified"},
		{"advertise garbage", func(c *Config) { c.AdvertiseAddr = "x" }, "AdvertiseAddr"},
		{"key 10", func(c *Config) { c.SecretKey = make([]byte, 10) }, "SecretKey is 10 bytes"},
		{"label too long", func(c *Config) { c.Label = strings.Repeat("l", 256) }, "Label"},
		{"negative probe", func(c *Config) { c.ProbeInterval = -time.Second }, "ProbeInterval (-1s) is negative"},
		{"negative retransmit", func(c *Config) { c.RetransmitMult = -2 }, "RetransmitMult (-2) is negative"},
		{"negative push/pull", func(c *Config) { c.PushPullInterval = -time.Second }, "PushPullInterval (-1s)"},
		{"negative suspicion", func(c *Config) { c.SuspicionMult = -1 }, "SuspicionMult"},
		{"probe timeout >= interval", func(c *Config) { c.ProbeInterval = 100 * time.Millisecond; c.ProbeTimeout = 100 * time.Millisecond }, "ProbeTimeout (100ms) must be less than ProbeInterval (100ms)"},
		{"timeout vs default interval", func(c *Config) { c.ProbeTimeout = 2 * time.Second }, "ProbeTimeout (2s) must be less than ProbeInterval (1s)"},
		{"join retry order", func(c *Config) { c.JoinRetryMin = time.Minute }, "JoinRetryMin (1m0s) cannot be larger than JoinRetryMax (10s)"},
		{"oversized meta", func(c *Config) { c.Meta.HTTPAddr = "h:" + strings.Repeat("1", 600) }, "512-byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.modify(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
			if _, nerr := New(c); (nerr == nil) != (err == nil) {
				t.Fatalf("New disagrees with Validate: %v vs %v", nerr, err)
			}
		})
	}
}

func TestConfig_MemberlistConfig(t *testing.T) {
	c := DefaultConfig()
	c.Meta.ID = "n1"
	c.BindAddr = "0.0.0.0:7001"
	c.AdvertiseAddr = "10.0.0.9:0"
	c.GossipInterval = 7 * time.Millisecond
	c.RetransmitMult = 5
	c = c.withDefaults()
	mc := c.memberlistConfig()
	if mc.Name != "n1" || mc.BindAddr != "0.0.0.0" || mc.BindPort != 7001 || mc.AdvertiseAddr != "10.0.0.9" || mc.AdvertisePort != 7001 {
		t.Fatalf("addresses: name %s bind %s:%d advertise %s:%d", mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertiseAddr, mc.AdvertisePort)
	}
	if mc.GossipInterval != 7*time.Millisecond || mc.ProbeInterval != time.Second || mc.DeadNodeReclaimTime != 30*time.Second {
		t.Fatalf("timings: gossip %s probe %s reclaim %s", mc.GossipInterval, mc.ProbeInterval, mc.DeadNodeReclaimTime)
	}
	if mc.RetransmitMult != 5 || mc.PushPullInterval != 30*time.Second {
		t.Fatalf("retransmit %d, push/pull %s", mc.RetransmitMult, mc.PushPullInterval)
	}
	if mc.Logger == nil || mc.LogOutput != nil {
		t.Fatal("memberlist must log through the bridge only")
	}
}

func TestState_String(t *testing.T) {
	for s, want := range map[State]string{StateAlive: "alive", StateSuspect: "suspect", StateDead: "dead", StateLeft: "left", 9: "state(9)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
	for k, want := range map[EventKind]string{EventJoin: "join", EventUpdate: "update", EventLeave: "leave"} {
		if got := k.String(); got != want {
			t.Errorf("EventKind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}
