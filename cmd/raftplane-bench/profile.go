package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"
)

// profiler collects Go profiles into a folder: the tool's own CPU profile
// for the whole run, and from every node the tool started (each runs with
// -debug-http on a port of its own) a CPU profile over each load window
// and a heap profile after it. A failed fetch is reported, never fatal:
// profiles explain a figure, they are not the figure.
type profiler struct {
	dir  string
	logw io.Writer
	tool *os.File
}

func startProfiler(dir string, logw io.Writer) (*profiler, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "tool-cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return &profiler{dir: dir, logw: logw, tool: f}, nil
}

// stop ends the tool's CPU profile.
func (p *profiler) stop() {
	if p == nil {
		return
	}
	pprof.StopCPUProfile()
	p.tool.Close()
	fmt.Fprintf(p.logw, "raftplane-bench: profiles in %s (go tool pprof -top <file>)\n", p.dir)
}

// cpu starts a CPU profile of length d on every node; the returned
// function waits for them to be written.
func (p *profiler) cpu(ctx context.Context, e *env, tag string, d time.Duration) (wait func()) {
	if p == nil {
		return func() {}
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	var wg sync.WaitGroup
	for _, nd := range e.nodes {
		if nd.debugURL == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", nd.debugURL, secs)
			p.fetch(ctx, url, fmt.Sprintf("%s-%s-cpu.pprof", tag, nd.name), d+30*time.Second)
		}()
	}
	return wg.Wait
}

// heap writes every node's heap profile, after a garbage collection.
func (p *profiler) heap(ctx context.Context, e *env, tag string) {
	if p == nil {
		return
	}
	for _, nd := range e.nodes {
		if nd.debugURL != "" {
			p.fetch(ctx, nd.debugURL+"/debug/pprof/heap?gc=1", fmt.Sprintf("%s-%s-heap.pprof", tag, nd.name), 30*time.Second)
		}
	}
}

func (p *profiler) fetch(ctx context.Context, url, name string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		f, err := os.Create(filepath.Join(p.dir, name))
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}()
	if err != nil {
		fmt.Fprintf(p.logw, "raftplane-bench: profile %s: %v\n", name, err)
	}
}
