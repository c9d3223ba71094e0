//go:build unix

package interop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// pipTimeout bounds creating the virtual environment and installing requirements.txt into it.
const pipTimeout = 5 * time.Minute

// requirePython returns python3, or skips (fails under CI=true) when it is missing.
func requirePython(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		skipOrFail(t, "python3 not found on PATH: install python3 with venv (Debian: python3 python3-venv)")
	}
	return py
}

// pythonVenv returns the python of a virtual environment that has python/requirements.txt
// installed. The environment lives in the user's cache directory, named by a hash of
// requirements.txt, so a run reuses it and a change of the pins makes a new one. It is built
// under a temporary name and renamed when complete, so a run that died half-way leaves nothing
// that a later run would mistake for a ready environment.
func pythonVenv(t *testing.T, python string) string {
	t.Helper()
	req, err := os.ReadFile(filepath.Join("python", "requirements.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(req)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "raftplane", "interop-python-"+hex.EncodeToString(sum[:6]))
	venvPy := filepath.Join(dir, "bin", "python")
	if _, err := os.Stat(venvPy); err == nil {
		return venvPy
	}
	// A directory whose python no longer runs (its base interpreter was removed) is rebuilt.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp) // gone after the rename; left-overs of a failure are removed
	ctx, cancel := context.WithTimeout(context.Background(), pipTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, python, "-m", "venv", tmp).CombinedOutput(); err != nil {
		skipOrFail(t, "python3 -m venv failed (Debian: apt-get install python3-venv): %v\n%s", err, out)
	}
	// -m pip, not bin/pip: the scripts' #! lines name the temporary directory.
	pip := exec.CommandContext(ctx, filepath.Join(tmp, "bin", "python"), "-m", "pip", "install",
		"--disable-pip-version-check", "--no-input", "-q", "-r", filepath.Join("python", "requirements.txt"))
	if out, err := pip.CombinedOutput(); err != nil {
		skipOrFail(t, "pip install -r interop/python/requirements.txt (needs PyPI): %v\n%s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another run finished the same environment first: use it.
		if _, serr := os.Stat(venvPy); serr != nil {
			t.Fatalf("rename %s to %s: %v", tmp, dir, err)
		}
	}
	return venvPy
}

var unittestRan = regexp.MustCompile(`(?m)^Ran (\d+) tests? in `)

// TestPythonClient runs interop/python/test_signalrcore.py (unittest) with signalrcore, a Python
// SignalR client pinned in requirements.txt, against a three-node cluster: every scenario over
// WebSockets (JSON and MessagePack), Server-Sent Events and long polling (JSON), and a graceful
// stop of a node.
func TestPythonClient(t *testing.T) {
	python := requirePython(t)
	venvPy := pythonVenv(t, python)
	// Two limits of the client, shortened rather than waited out:
	//   - its stop closes the socket while its reader thread is blocked in recv, then waits for
	//     that thread (base_socket_client.py dispose), so a stop returns when the server next
	//     writes: with the default 15 s keep-alive each stop would take up to 15 s;
	//   - over long polling it hands over one record per poll response and keeps the rest until a
	//     later poll returns (long_polling_client.py _append), so a second message in a response
	//     would wait for the next one or for the 90 s poll timeout.
	c := startClientCluster(t, "-keepalive", "1s", "-poll-timeout", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), clientSuiteTimeout)
	defer cancel()
	start := time.Now()
	out, err := c.run(ctx, "python", []string{"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"},
		venvPy, "-m", "unittest", "-v", "test_signalrcore")
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		t.Fatalf("python -m unittest (%v): %v\n%s", took, err, out)
	}
	m := unittestRan.FindSubmatch(out)
	if m == nil {
		t.Fatalf("python -m unittest: no \"Ran N tests\" line\n%s", out)
	}
	if n, _ := strconv.Atoi(string(m[1])); n == 0 {
		t.Fatalf("python -m unittest ran no test\n%s", out)
	}
	t.Logf("python -m unittest (%v):\n%s", took, out)
}
