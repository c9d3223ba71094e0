package main

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// versionInfo is what `raftplane version` and `raftplane -version` print:
// the build's own record (runtime/debug), so a binary says what it is
// without a version string stamped in by hand at release time.
type versionInfo struct {
	// Version is the main module's version: a tag (v1.2.3) for `go install
	// ...@v1.2.3`, a pseudo-version, or "(devel)" for a build in a checkout.
	Version string
	// Revision, Time and Modified come from the VCS stamp of a build in a
	// checkout (-buildvcs, on by default): the commit, its time, and
	// whether the work tree had uncommitted changes.
	Revision string
	Time     string
	Modified bool
	// GoVersion is the toolchain that built the binary, Platform the
	// GOOS/GOARCH it runs on (which is the one it was built for).
	GoVersion string
	Platform  string
}

// readVersion reads this binary's build information.
func readVersion() versionInfo {
	bi, ok := debug.ReadBuildInfo()
	return versionFrom(bi, ok)
}

// versionFrom is readVersion on given build information; ok false (a binary
// built without module support) leaves only the Go version.
func versionFrom(bi *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Version: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if !ok || bi == nil {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the multi-line text printed by `raftplane version`.
func (v versionInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "raftplane %s\n", v.Version)
	if v.Revision != "" {
		rev := v.Revision
		if v.Modified {
			rev += " (modified)"
		}
		fmt.Fprintf(&b, "commit    %s\n", rev)
	}
	if v.Time != "" {
		fmt.Fprintf(&b, "committed %s\n", v.Time)
	}
	fmt.Fprintf(&b, "go        %s %s\n", v.GoVersion, v.Platform)
	return b.String()
}

// runVersion is `raftplane version`.
func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("raftplane version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, "Usage: raftplane version   print the version, commit and Go version") }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("version: unexpected argument %q", fs.Arg(0))
	}
	_, err := io.WriteString(stdout, readVersion().String())
	return err
}
