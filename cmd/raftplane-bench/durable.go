package main

// The durable ceiling: the shared bench's ceiling with
// docs/experiments/durableceiling applied, so that a publish is delivered
// only once a majority of the three nodes holds it on disk. It is the
// floor of any server that keeps acknowledged messages through a crash,
// measured with the ceiling's own fan-out code; -peers runs the ceiling's
// cells of a run once more with it (-peers-durable-ceiling) and its column
// sits between the ceiling's and raftplane's.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// durableCells are side-by-side.sh's ceiling cells the durable ceiling is
// run in, in the order given (nil cells: every cell, so both).
func durableCells(cells []string) []string {
	var out []string
	for _, c := range []string{"s2-ceil", "s1-ceil"} {
		if cells == nil || slices.Contains(cells, c) {
			out = append(out, c)
		}
	}
	return out
}

// buildDurableCeiling builds the patched ceiling into build/durable and
// links the rest of what peers-build.sh built beside it, so that
// side-by-side.sh with PEERS=build/durable runs it in place of the ceiling.
// It returns that folder.
func buildDurableCeiling(ctx context.Context, root, bench, build string, logw io.Writer) (string, error) {
	exp := filepath.Join(root, "docs", "experiments", "durableceiling")
	src, err := os.MkdirTemp("", "durableceiling-src-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	files, err := filepath.Glob(filepath.Join(bench, "ceiling", "*"))
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("durable ceiling: no ceiling sources in %s", filepath.Join(bench, "ceiling"))
	}
	for _, f := range append(files, filepath.Join(exp, "durable.go")) {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("durable ceiling: %w", err)
		}
		if err := os.WriteFile(filepath.Join(src, filepath.Base(f)), b, 0o644); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(build, "durable")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, c := range [][]string{
		{"patch", "-s", "-p1", "-i", filepath.Join(exp, "ceiling.patch")},
		{"go", "build", "-o", filepath.Join(dir, "ceiling"), "."},
	} {
		cmd := exec.CommandContext(ctx, c[0], c[1:]...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = src, logw, logw
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("durable ceiling: %s: %w", strings.Join(c, " "), err)
		}
	}
	entries, err := os.ReadDir(build)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		switch n := e.Name(); {
		case n == "ceiling" || n == "raftplane" || n == "durable" || strings.HasSuffix(n, ".jsonl"):
		default:
			link := filepath.Join(dir, n)
			_ = os.Remove(link)
			if err := os.Symlink(filepath.Join(build, n), link); err != nil {
				return "", err
			}
		}
	}
	return dir, nil
}

// runDurableCells runs the ceiling's cells with the durable ceiling and
// appends their lines to out, labelled dceil... instead of ceil....
func runDurableCells(ctx context.Context, root, bench, build string, env []string, out string, cells []string, logw io.Writer) error {
	dir, err := buildDurableCeiling(ctx, root, bench, build, logw)
	if err != nil {
		return err
	}
	logs, err := os.MkdirTemp("", "durableceiling-logs-") // the nodes' logs, on /tmp as the nodes' data folders
	if err != nil {
		return err
	}
	defer os.RemoveAll(logs)
	tmp := filepath.Join(logs, "steps.jsonl")
	env = append(slices.Clone(env), "PEERS="+dir, "OUT="+tmp, "CEILING_DURABLE_DIR="+filepath.Join(logs, "log"))
	fmt.Fprintf(logw, "raftplane-bench: the durable ceiling: %s/side-by-side.sh %s (PEERS=%s)\n", bench, strings.Join(cells, " "), dir)
	if err := runScript(ctx, root, env, logw, filepath.Join(bench, "side-by-side.sh"), cells...); err != nil {
		return fmt.Errorf("side-by-side.sh (durable ceiling): %w", err)
	}
	b, err := os.ReadFile(tmp)
	if err != nil {
		return fmt.Errorf("durable ceiling: no results: %w", err)
	}
	f, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	b, err = relabelDurable(b)
	if err != nil {
		f.Close()
		return fmt.Errorf("durable ceiling: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// relabelDurable renames the ceiling's labels in JSONL lines to the durable
// ceiling's (ceil3-s1-client -> dceil3-s1-client); other lines are kept.
func relabelDurable(b []byte) ([]byte, error) {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), maxPeersLine)
	for sc.Scan() {
		l := sc.Bytes()
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		out.Write(bytes.Replace(l, []byte(`"label":"ceil`), []byte(`"label":"dceil`), 1))
		out.WriteByte('\n')
	}
	return out.Bytes(), sc.Err()
}
