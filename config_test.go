package raftplane

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/hub"
)

func TestDefaultConfig_Validates(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestValidate_NamesTheOption: each problem is an *OptionError naming the
// flag to set, worded for an operator, whether the check is the root's or
// a part's (hub, cluster, fsm, gossip).
func TestValidate_NamesTheOption(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		option string
		want   string // the whole Error()
	}{
		{"cluster: voters", func(c *Config) { c.Cluster.MaxVoters = 2 }, "voters", "-voters: 2 must be odd, from 1 to 7"},
		{"hub: two fields", func(c *Config) { c.Hub.KeepAliveInterval = 40 * time.Second },
			"keepalive", "-keepalive: 40s must be less than -client-timeout (30s)"},
		{"hub: a list of fields", func(c *Config) { c.Hub.SendTimeout = 0 },
			"send-timeout", "-send-timeout (0s), -publish-timeout (10s) and -negotiate-ttl (1m0s) must be positive"},
		{"hub: a phrase", func(c *Config) {
			c.Hub.DisableWebSockets, c.Hub.DisableServerSentEvents, c.Hub.DisableLongPolling = true, true, true
		},
			"transports", "-transports: every transport is disabled"},
		{"hub: field with a colon", func(c *Config) { c.Hub.ClientMethods = []string{"Nope"} },
			"client-methods", `-client-methods: "Nope" is not a built-in method`},
		{"fsm", func(c *Config) { c.FSM.CacheMaxEntries = 0 }, "cache-entries", "-cache-entries: 0 must be at least 1"},
		{"hub: one field", func(c *Config) { c.Hub.DisconnectTimeout = 0 },
			"disconnect-timeout", "-disconnect-timeout: 0s must be positive"},
		{"gossip", func(c *Config) { c.GossipAddr = "localhost:7946" }, "gossip", `-gossip: "localhost:7946" is not ip:port`},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log-level", `-log-level: "loud": want debug, info, warn or error`},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, "log-format", `-log-format: "xml": want text or json`},
		{"all interfaces", func(c *Config) { c.HTTPAddr = "0.0.0.0:5000" }, "http", "set -advertise"},
		{"join", func(c *Config) { c.Join = []string{"node2"} }, "join", `-join: "node2" is not host:port`},
		{"secret and its file", func(c *Config) { c.APIKey, c.APIKeyFile = "k", "/k" }, "api-key-file", "-api-key and -api-key-file are both set"},
		{"gossip key", func(c *Config) { c.GossipKey = "c2hvcnQ=" }, "gossip-key", "-gossip-key: 5 bytes once decoded"},
		{"peer files", func(c *Config) { c.PeerCertFile = "/c" }, "peer-cert-file", "go together"},
		{"shutdown", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown-timeout", "-shutdown-timeout: 0s must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			var found bool
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var oe *OptionError
				if errors.As(e, &oe) && oe.Option == tt.option && strings.Contains(e.Error(), tt.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("errors:\n%v\nwant an *OptionError for %q holding %q", err, tt.option, tt.want)
			}
		})
	}
}

// TestValidate_FilesStandIn: Validate does not read files, yet a key file
// counts as a key (the JWT issuer check) and the set-together rules hold.
func TestValidate_FilesStandIn(t *testing.T) {
	c := DefaultConfig()
	c.JWTKeyFile, c.Hub.JWTIssuer = "/does/not/exist", "https://issuer"
	if err := c.Validate(); err != nil {
		t.Fatalf("a JWT key file with an issuer: %v", err)
	}
	c = DefaultConfig()
	c.Hub.JWTIssuer = "https://issuer"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "-jwt-issuer and -jwt-audience need a JWT key") {
		t.Fatalf("an issuer without a key: %v", err)
	}
}

// TestOptions_Table: names are unique flags; every option writes the
// fields it names, and reads back what it wrote; every settable field of
// Config is an option's or set by New (the list below, checked against
// Config's docs).
func TestOptions_Table(t *testing.T) {
	seen := map[string]bool{}
	covered := map[string]bool{}
	for _, o := range Options() {
		if seen[o.Name] || o.Name == "" || strings.HasPrefix(o.Name, "-") || o.Usage == "" || o.Group == "" {
			t.Errorf("option %q: duplicate, empty or without usage/group", o.Name)
		}
		seen[o.Name] = true
		if !strings.HasPrefix(o.Env(), "RAFTPLANE_") || strings.Contains(o.Env(), "-") {
			t.Errorf("%s: env %q", o.Name, o.Env())
		}
		for _, f := range o.Fields() {
			covered[f] = true
			if _, ok := fieldByPath(reflect.ValueOf(&Config{}).Elem(), f); !ok {
				t.Errorf("%s names field %q, which Config does not have", o.Name, f)
			}
		}
		// A changed value lands in one of the option's fields and reads
		// back as set.
		c := DefaultConfig()
		v := o.Value(&c)
		text := sampleValue(v.Type(), v.String())
		if o.Name == "transports" {
			text = "sse"
		}
		if o.Name == "client-methods" {
			text = "JoinGroup"
		}
		if err := v.Set(text); err != nil {
			t.Errorf("%s: Set(%q): %v", o.Name, text, err)
			continue
		}
		if got := o.Value(&c).String(); got != text {
			t.Errorf("%s: set %q, reads %q", o.Name, text, got)
		}
		def := DefaultConfig()
		changed := false
		for _, f := range o.Fields() {
			a, _ := fieldByPath(reflect.ValueOf(&c).Elem(), f)
			b, _ := fieldByPath(reflect.ValueOf(&def).Elem(), f)
			if !reflect.DeepEqual(a.Interface(), b.Interface()) {
				changed = true
			}
		}
		if !changed {
			t.Errorf("%s: Set(%q) changed none of its fields %v", o.Name, text, o.Fields())
		}
		// The default reads back to itself: the defaults file's values
		// load to DefaultConfig.
		def2 := DefaultConfig()
		if err := o.Value(&def2).Set(o.Value(&def).String()); err != nil || !reflect.DeepEqual(def2, def) {
			t.Errorf("%s: its default %q does not read back (%v)", o.Name, o.Value(&def).String(), err)
		}
	}
	// Fields no option sets: New sets them from the node-level fields, or
	// they are tuning kept out of the flags.
	setByNew := map[string]bool{
		"Hub.NodeID": true, "Hub.JWTPublicKeys": true,
		"Cluster.NodeID": true, "Cluster.DataDir": true, "Cluster.RaftBind": true, "Cluster.RaftAdvertise": true,
		"Cluster.Bootstrap": true,
		// Tuning kept out of the flags: their defaults are what the
		// design assumes (cluster/DESIGN.md); embedders may set them.
		"Cluster.ApplyTimeout": true, "Cluster.ReconcileInterval": true, "Cluster.StabilizeTime": true,
		"Cluster.MaxTrailing": true,
		// How often the events runner records its progress: a trade of
		// log entries against redelivery after a leader change.
		"Hub.EventsMarkEvery": true, "Hub.EventsMarkInterval": true,
		// Concurrent scrapes: a guard against a scrape storm, not a knob.
		"Metrics.MaxScrapes": true,
	}
	var missing []string
	walkFields(reflect.TypeOf(Config{}), "", func(path string) {
		if !covered[path] && !setByNew[path] {
			missing = append(missing, path)
		}
	})
	if len(missing) > 0 {
		t.Errorf("Config fields no option sets (add an option in options.go, or list them here with the reason): %v", missing)
	}
}

// sampleValue is a valid value of a type, different from def.
func sampleValue(typ, def string) string {
	switch typ {
	case "int":
		if def == "7" {
			return "5"
		}
		return "7"
	case "bool":
		if def == "true" {
			return "false"
		}
		return "true"
	case "duration":
		if def == "3s" {
			return "4s"
		}
		return "3s"
	case "list":
		return "a,b"
	}
	return "sample"
}

// fieldByPath returns the field at a Go path ("Hub.MaxMessageSize").
func fieldByPath(v reflect.Value, path string) (reflect.Value, bool) {
	for _, name := range strings.Split(path, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		v = v.FieldByName(name)
		if !v.IsValid() {
			return reflect.Value{}, false
		}
	}
	return v, true
}

// walkFields calls f with the path of every exported field of t, going
// into the parts' configs.
func walkFields(t reflect.Type, prefix string, f func(string)) {
	parts := map[reflect.Type]bool{reflect.TypeOf(hub.Config{}): true, reflect.TypeOf(fsm.Config{}): true,
		reflect.TypeOf(DefaultConfig().Cluster): true, reflect.TypeOf(DefaultConfig().Metrics): true}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		if parts[sf.Type] {
			walkFields(sf.Type, prefix+sf.Name+".", f)
			continue
		}
		switch sf.Type.Kind() {
		case reflect.Func, reflect.Interface, reflect.Pointer:
			continue // wiring (callbacks, ports, loggers, clients), never a setting
		}
		f(prefix + sf.Name)
	}
}

// TestSavePeers_RetriesAFailedWrite is the bug of issue 13 item 6: a
// failed rename must not count as written, or the loop never tries again.
func TestSavePeers_RetriesAFailedWrite(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, peersFile)
	// A non-empty folder where the file goes: the rename fails.
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	peers := []string{"10.0.0.2:7946", "10.0.0.3:7946"}
	last, err := savePeers(dir, peers, "")
	if err == nil || last != "" {
		t.Fatalf("rename over a folder: last %q, err %v; want the error and nothing remembered", last, err)
	}
	if _, err := os.Stat(filepath.Join(dir, peersFile+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("the temporary file stayed: %v", err)
	}
	if err := os.RemoveAll(target); err != nil {
		t.Fatal(err)
	}
	last, err = savePeers(dir, peers, last)
	if err != nil || last == "" {
		t.Fatalf("retry: last %q, err %v", last, err)
	}
	if got := loadPeers(dir); !reflect.DeepEqual(got, peers) {
		t.Fatalf("loaded %v, want %v", got, peers)
	}
	// Unchanged peers are not written again; none keeps the last list.
	if again, err := savePeers(dir, peers, last); err != nil || again != last {
		t.Fatalf("unchanged: %q %v", again, err)
	}
	if again, err := savePeers(dir, nil, last); err != nil || again != last || len(loadPeers(dir)) != 2 {
		t.Fatalf("alone: %q %v", again, err)
	}
}
