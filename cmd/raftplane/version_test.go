package main

import (
	"bytes"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestVersionFrom(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want versionInfo
		// lines the printed text must hold, and must not
		wantText, notText []string
	}{
		{name: "no build info", ok: false,
			want:     versionInfo{Version: "unknown", GoVersion: runtime.Version(), Platform: platform},
			wantText: []string{"raftplane unknown\n", "go        " + runtime.Version() + " " + platform}, notText: []string{"commit"}},
		{name: "tagged install", ok: true,
			bi:       &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Path: "github.com/raftplane/raftplane", Version: "v1.4.0"}},
			want:     versionInfo{Version: "v1.4.0", GoVersion: "go1.26.1", Platform: platform},
			wantText: []string{"raftplane v1.4.0\n", "go        go1.26.1 "}, notText: []string{"commit", "committed"}},
		{name: "checkout build with changes", ok: true,
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "-buildmode", Value: "exe"},
				{Key: "vcs", Value: "git"},
				{Key: "vcs.revision", Value: "6de586a2bcbebad976041b22a51114c13c70796d"},
				{Key: "vcs.time", Value: "2026-12-06T13:37:18Z"},
				{Key: "vcs.modified", Value: "true"},
			}},
			want: versionInfo{Version: "(devel)", Revision: "6de586a2bcbebad976041b22a51114c13c70796d", Time: "2026-12-06T13:37:18Z",
				Modified: true, GoVersion: "go1.26.8", Platform: platform},
			wantText: []string{"raftplane (devel)\n", "commit    6de586a2bcbebad976041b22a51114c13c70796d (modified)\n", "committed 2026-12-06T13:37:18Z\n"}},
		{name: "clean checkout build", ok: true,
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "false"},
			}},
			want:     versionInfo{Version: "(devel)", Revision: "abc123", GoVersion: "go1.26.8", Platform: platform},
			wantText: []string{"commit    abc123\n"}, notText: []string{"modified", "committed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := versionFrom(tt.bi, tt.ok)
			if got != tt.want {
				t.Fatalf("versionFrom = %+v, want %+v", got, tt.want)
			}
			text := got.String()
			for _, w := range tt.wantText {
				if !strings.Contains(text, w) {
					t.Errorf("text %q lacks %q", text, w)
				}
			}
			for _, n := range tt.notText {
				if strings.Contains(text, n) {
					t.Errorf("text %q holds %q", text, n)
				}
			}
		})
	}
}

func TestRunVersion(t *testing.T) {
	var out bytes.Buffer
	if err := runVersion(nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	// The test binary's own build info: a module version line and the
	// toolchain running the test.
	if !strings.HasPrefix(out.String(), "raftplane ") || !strings.Contains(out.String(), runtime.Version()) {
		t.Fatalf("raftplane version printed %q, want the version and %s", out.String(), runtime.Version())
	}
	if err := runVersion([]string{"extra"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "unexpected argument") {
		t.Fatalf("raftplane version extra: err = %v, want unexpected argument", err)
	}
}

func TestParseFlags_Version(t *testing.T) {
	o, err := parseFlags([]string{"-version"}, io.Discard)
	if err != nil || !o.version {
		t.Fatalf("-version: err %v, version %v; want it set", err, o != nil && o.version)
	}
	// A release tag in RAFTPLANE_VERSION (common in images) neither sets
	// -version nor fails the start.
	t.Setenv("RAFTPLANE_VERSION", "1.4.0")
	o, err = parseFlags(nil, io.Discard)
	if err != nil || o.version {
		t.Fatalf("RAFTPLANE_VERSION=1.4.0: err %v, version %v; want neither", err, o != nil && o.version)
	}
}

func TestParseFlags_ReadyMaxContact(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want time.Duration
	}{
		{args: nil, want: 5 * time.Second},
		{args: []string{"-ready-max-contact", "2s"}, want: 2 * time.Second},
	} {
		o, err := parseFlags(tt.args, io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if o.cfg.Hub.ReadyMaxContact != tt.want {
			t.Errorf("%q: ReadyMaxContact %s, want %s", tt.args, o.cfg.Hub.ReadyMaxContact, tt.want)
		}
	}
}
