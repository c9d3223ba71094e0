//go:build unix

package interop

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Java (and Python, python_test.go) client tests share this harness: a three-node cluster of
// the real binary, the client's own test runner started as a child process with the cluster's
// addresses in its environment, and a control endpoint through which that runner stops a node
// gracefully (so its clients get a Close with allowReconnect) and starts it again.

const (
	// clientSuiteTimeout bounds one run of a client's test suite (Maven's first run on a fresh
	// machine downloads the client and JUnit, so it is generous).
	clientSuiteTimeout = 8 * time.Minute
	// clientMaxMessageSize is the cluster's -max-message-size: small, so the suites send a message
	// over it cheaply (at least 256, see hub.Config).
	clientMaxMessageSize = 4096
)

// clientCluster is a three-node cluster for a client suite, with its control endpoint.
type clientCluster struct {
	t        *testing.T
	bin, key string
	args     []string // every node's flags after the address flags (a restart reuses them)
	nodes    []*server
	reqs     chan clientCtrl
	done     chan struct{} // closed when the suite has exited
	restarts int
	ctrlURL  string
}

type clientCtrl struct {
	op    string // stop or start
	node  int
	reply chan error
}

// startClientCluster builds the binary and starts three nodes with an API key, a small
// -max-message-size and extraArgs, and waits until they form one cluster.
func startClientCluster(t *testing.T, extraArgs ...string) *clientCluster {
	t.Helper()
	bin := buildServer(t)
	key := randomKey(t)
	args := append([]string{"-api-key", key, "-max-message-size", strconv.Itoa(clientMaxMessageSize)}, extraArgs...)
	c := &clientCluster{t: t, bin: bin, key: key, args: args, reqs: make(chan clientCtrl), done: make(chan struct{})}
	c.nodes = startCluster(t, bin, 3, args...)
	waitVoters(t, c.nodes)
	c.ctrlURL = c.listen()
	return c
}

// env is what a suite needs to find the cluster:
//
//	RAFTPLANE_NODES             the nodes' base URLs, comma-separated (node 0 first)
//	RAFTPLANE_API_KEY           the REST API key
//	RAFTPLANE_CONTROL           POST /stop?node=i (SIGTERM, wait for the exit), /start?node=i
//	RAFTPLANE_MAX_MESSAGE_SIZE  the nodes' -max-message-size
func (c *clientCluster) env() []string {
	var urls []string
	for _, s := range c.nodes {
		urls = append(urls, s.URL)
	}
	return []string{
		"RAFTPLANE_NODES=" + strings.Join(urls, ","),
		"RAFTPLANE_API_KEY=" + c.key,
		"RAFTPLANE_CONTROL=" + c.ctrlURL,
		"RAFTPLANE_MAX_MESSAGE_SIZE=" + strconv.Itoa(clientMaxMessageSize),
	}
}

// listen serves the control endpoint until the test ends and returns its URL. Its handlers only
// pass requests on: the test goroutine, in run, acts on them (it may fail the test).
func (c *clientCluster) listen() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(c.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	c.t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func (c *clientCluster) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	q := clientCtrl{op: strings.TrimPrefix(r.URL.Path, "/"), reply: make(chan error, 1)}
	i, err := strconv.Atoi(r.URL.Query().Get("node"))
	if err != nil || i < 0 || i >= len(c.nodes) {
		http.Error(w, fmt.Sprintf("node=%q: want 0..%d", r.URL.Query().Get("node"), len(c.nodes)-1), http.StatusBadRequest)
		return
	}
	q.node = i
	select {
	case c.reqs <- q:
	case <-c.done:
		http.Error(w, "test over", http.StatusServiceUnavailable)
		return
	}
	select {
	case err = <-q.reply:
	case <-c.done:
		err = errors.New("test over")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// run runs name with args in dir (its own process group, killed when ctx ends), with the cluster's
// environment, and acts on control requests until it exits. It returns the combined output.
func (c *clientCluster) run(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	defer close(c.done)
	type result struct {
		out []byte
		err error
	}
	res := make(chan result, 1)
	env = append(c.env(), env...)
	go func() {
		out, err := runNode(ctx, name, dir, env, args...) // any program, not only node
		res <- result{out, err}
	}()
	for {
		select {
		case r := <-res:
			return r.out, r.err
		case q := <-c.reqs:
			q.reply <- c.handle(q)
		}
	}
}

func (c *clientCluster) handle(q clientCtrl) error {
	t := c.t
	s := c.nodes[q.node]
	start := time.Now()
	switch q.op {
	case "stop":
		if s.hasExited() {
			return fmt.Errorf("%s is not running", s.Name)
		}
		stopGracefully(t, s)
		t.Logf("control: %s stopped (SIGTERM) in %v", s.Name, time.Since(start).Round(time.Millisecond))
		return nil
	case "start":
		if !s.hasExited() {
			return fmt.Errorf("%s is running", s.Name)
		}
		var seed *server
		for _, o := range c.nodes {
			if !o.hasExited() {
				seed = o
				break
			}
		}
		if seed == nil {
			return errors.New("no node is running to join")
		}
		c.restarts++
		name := fmt.Sprintf("%s-r%d", strings.SplitN(s.Name, "-", 2)[0], c.restarts)
		args := append(slices.Clone(c.args), "-join", seed.Addrs.Gossip)
		r := startServerAt(t, c.bin, name, s.Addrs, args...)
		c.nodes[q.node] = r
		waitReady(t, r, readyTimeout)
		if err := clusterSettled(t, c.nodes, formTimeout); err != nil {
			return err
		}
		t.Logf("control: %s back in the cluster %v after the start", name, time.Since(start).Round(time.Millisecond))
		return nil
	}
	return fmt.Errorf("unknown operation %q: want stop or start", q.op)
}

// requireJavaAndMaven returns the mvn binary, or skips (fails under CI=true) when Java 17+ or Maven
// is missing.
func requireJavaAndMaven(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("java"); err != nil {
		skipOrFail(t, "java not found on PATH: install a JDK 17+ (Debian: openjdk-17-jdk-headless) and Maven")
	}
	mvn, err := exec.LookPath("mvn")
	if err != nil {
		skipOrFail(t, "mvn not found on PATH: install Maven (Debian: maven)")
	}
	return mvn
}

// TestJavaClient runs interop/java (JUnit Jupiter tests of the official Java client,
// com.microsoft.signalr:signalr) with Maven against a three-node cluster. Maven resolves the pinned
// client from ~/.m2 or Maven Central; its output is shown when a test fails, with every failed
// test's report and the client's log.
func TestJavaClient(t *testing.T) {
	mvn := requireJavaAndMaven(t)
	dir, err := filepath.Abs("java")
	if err != nil {
		t.Fatal(err)
	}
	reports := filepath.Join(dir, "target", "surefire-reports")
	// Stale reports of an earlier run would be counted as this run's.
	if err := os.RemoveAll(reports); err != nil {
		t.Fatal(err)
	}
	// The nodes' logs of a failed run are long and printed as they came,
	// so a CI log cut in the middle could hide why; this cleanup, made
	// before the cluster's, says it again after them.
	var verdict string
	t.Cleanup(func() {
		if verdict != "" {
			t.Logf("TestJavaClient failed (repeated after the nodes' logs):\n%s", verdict)
		}
	})
	c := startClientCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), clientSuiteTimeout)
	defer cancel()
	start := time.Now()
	out, err := c.run(ctx, dir, nil, mvn, "-q", "-B", "-Dstyle.color=never", "test")
	// Maven 3.8 writes colour resets even in batch mode with colour off.
	out = bytes.TrimSpace(bytes.ReplaceAll(out, []byte("\x1b[0m"), nil))
	took := time.Since(start).Round(time.Millisecond)
	sum, serr := readSurefire(reports)
	if err != nil {
		verdict = fmt.Sprintf("mvn -q -B test (%v): %v\n%s%s", took, err, sum.lines, firstBytes(sum.failures, 8<<10))
		t.Fatalf("mvn -q -B test (%v): %v\n%s\n%s", took, err, out, sum.failures)
	}
	if serr != nil {
		t.Fatalf("mvn -q -B test passed but its reports are unreadable: %v\n%s", serr, out)
	}
	if sum.tests == 0 {
		t.Fatalf("mvn -q -B test ran no test\n%s", out)
	}
	t.Logf("mvn -q -B test (%v): %d tests, %d failed, %d errors, %d skipped\n%s%s",
		took, sum.tests, sum.failed, sum.errors, sum.skipped, sum.lines, out)
}

// surefireSummary adds up Surefire's XML reports.
type surefireSummary struct {
	tests, failed, errors, skipped int
	lines                          string // one line per test case: class, name, outcome, time
	failures                       string // the text and output files of the classes that failed
}

func readSurefire(dir string) (surefireSummary, error) {
	var sum surefireSummary
	files, err := filepath.Glob(filepath.Join(dir, "TEST-*.xml"))
	if err != nil || len(files) == 0 {
		return sum, fmt.Errorf("no Surefire report in %s (%v)", dir, err)
	}
	var lines, failures strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return sum, err
		}
		var suite struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Errors   int    `xml:"errors,attr"`
			Skipped  int    `xml:"skipped,attr"`
			Cases    []struct {
				Name    string    `xml:"name,attr"`
				Time    string    `xml:"time,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
				Skipped *struct {
					Text string `xml:",chardata"` // the abort's exception and message
				} `xml:"skipped"`
			} `xml:"testcase"`
		}
		if err := xml.Unmarshal(b, &suite); err != nil {
			return sum, fmt.Errorf("%s: %w", f, err)
		}
		sum.tests += suite.Tests
		sum.failed += suite.Failures
		sum.errors += suite.Errors
		sum.skipped += suite.Skipped
		for _, tc := range suite.Cases {
			outcome := "ok"
			switch {
			case tc.Failure != nil:
				outcome = "FAILED"
			case tc.Error != nil:
				outcome = "ERROR"
			case tc.Skipped != nil:
				why, _, _ := strings.Cut(strings.TrimSpace(tc.Skipped.Text), "\n")
				outcome = "skipped: " + why
			}
			fmt.Fprintf(&lines, "  %s %s: %s (%ss)\n", strings.TrimPrefix(suite.Name, "dev.raftplane.interop."), tc.Name, outcome, tc.Time)
		}
		if suite.Failures+suite.Errors > 0 {
			for _, ext := range []string{".txt", "-output.txt"} {
				if b, err := os.ReadFile(filepath.Join(dir, suite.Name+ext)); err == nil {
					fmt.Fprintf(&failures, "--- %s%s\n%s\n", suite.Name, ext, b)
				}
			}
		}
	}
	sum.lines, sum.failures = lines.String(), failures.String()
	return sum, nil
}

// firstBytes is s cut to at most n bytes, saying so.
func firstBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("\n[... %d more bytes]", len(s)-n)
}
