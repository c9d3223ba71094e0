package deploy

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDockerfile checks the image recipe: the build stage makes a static
// binary of this commit, and the image runs it as an unprivileged user
// with its data in a volume, the three ports exposed and a health check.
func TestDockerfile(t *testing.T) {
	b := needBinary(t)
	d, err := parseDockerfile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.stages) < 2 {
		t.Fatalf("%d stages: want a build stage and a runtime stage", len(d.stages))
	}

	// The Go of the build stage is at least what go.mod asks for.
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindSubmatch(gomod)
	have := regexp.MustCompile(`^(\d+)\.(\d+)`).FindStringSubmatch(d.args["GO_VERSION"])
	if want == nil || have == nil || !strings.HasPrefix(d.stages[0].from, "golang:${GO_VERSION}") {
		t.Fatalf("go.mod's go line %q, Dockerfile GO_VERSION %q, first FROM %q", want, d.args["GO_VERSION"], d.stages[0].from)
	}
	if atoi(have[1])*1000+atoi(have[2]) < atoi(string(want[1]))*1000+atoi(string(want[2])) {
		t.Errorf("GO_VERSION %s is older than go.mod's go %s.%s", d.args["GO_VERSION"], want[1], want[2])
	}
	build, _ := d.buildCommand()
	for _, s := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/raftplane"} {
		if !strings.Contains(build, s) {
			t.Errorf("the build command %q lacks %s", build, s)
		}
	}

	// Static: no program interpreter, no shared libraries.
	f, err := elf.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a program interpreter: not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v: not static", libs)
	}

	// Stamped with this commit: .dockerignore keeps .git in the context.
	out, err := exec.Command(b, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("raftplane version: %v\n%s", err, out)
	}
	head, err := exec.Command("git", "-C", repoRoot, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	if !strings.Contains(string(out), strings.TrimSpace(string(head))) {
		t.Errorf("raftplane version does not name commit %s:\n%s", bytes.TrimSpace(head), out)
	}
	t.Logf("built as the Dockerfile does: %s", bytes.TrimSpace(out))

	final := d.final()
	user := final.all("USER")
	if len(user) != 1 {
		t.Fatalf("USER %q: want exactly one", user)
	}
	uid, _, _ := strings.Cut(user[0], ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric uid other than 0 (Kubernetes runAsNonRoot checks numbers)", user[0])
	}
	if v := final.all("VOLUME"); len(v) != 1 || v[0] != `["/data"]` {
		t.Errorf("VOLUME %q, want [\"/data\"]", v)
	}
	if env := strings.Join(final.all("ENV"), " "); !strings.Contains(env, "RAFTPLANE_DATA=/data") {
		t.Errorf("ENV %q does not put the data folder in the volume", env)
	}
	expose := strings.Fields(strings.Join(final.all("EXPOSE"), " "))
	for _, p := range []string{"5000/tcp", "7000/tcp", "7946/tcp", "7946/udp"} {
		if !slices.Contains(expose, p) {
			t.Errorf("EXPOSE %v lacks %s", expose, p)
		}
	}
	if hc := final.all("HEALTHCHECK"); len(hc) != 1 || !strings.Contains(hc[0], "/healthz") {
		t.Errorf("HEALTHCHECK %q: want one on /healthz", hc)
	}
	ep := final.all("ENTRYPOINT")
	var copied []string
	for _, c := range final.all("COPY") {
		copied = append(copied, strings.Fields(c)...)
	}
	if len(ep) != 1 || !slices.Contains(copied, "/usr/local/bin/raftplane") || !strings.Contains(ep[0], `"/usr/local/bin/raftplane"`) {
		t.Errorf("ENTRYPOINT %q does not run the binary the image copies (%v)", ep, copied)
	}

	// The image's default command is a working one-node cluster: run it
	// with the binary, in a fresh data folder, and ask it for its health.
	cmd := final.all("CMD")
	if len(cmd) != 1 {
		t.Fatalf("CMD %q", cmd)
	}
	var args []string
	if err := json.Unmarshal([]byte(cmd[0]), &args); err != nil {
		t.Fatalf("CMD %s: %v", cmd[0], err)
	}
	_, port, _ := strings.Cut(freeAddr(t), "127.0.0.1:")
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "0.0.0.0:5000", "0.0.0.0:"+port)
	}
	n := &node{name: "image-default", http: "127.0.0.1:" + port, data: t.TempDir(), logPath: filepath.Join(t.TempDir(), "node.log")}
	n.startRaw(t, b, append(args, "-data", n.data, "-raft", freeAddr(t), "-gossip", freeAddr(t))...)
	n.waitLeader(t)
}

// TestDockerImage_Builds builds the image when a container engine is
// reachable. None is here (the docker client has no daemon, and no
// registry is reachable for the golang and busybox base images), so it
// says so and skips; TestDockerfile covers what can be checked without one.
func TestDockerImage_Builds(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no docker command: the image build is not tested here (TestDockerfile runs its build stage's command)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, docker, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("docker has no daemon (%v: %s): the image build is not tested here", err, bytes.TrimSpace(out))
	}
	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tag := fmt.Sprintf("raftplane-test:%d", time.Now().UnixNano())
	build := exec.CommandContext(ctx, docker, "build", "-t", tag, repoRoot)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	defer exec.Command(docker, "rmi", tag).Run()
	out, err := exec.CommandContext(ctx, docker, "run", "--rm", tag, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %s version: %v\n%s", tag, err, out)
	}
	t.Logf("%s", out)
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// TestSystemdUnit checks deploy/systemd/raftplane.service with systemd's
// own tools: `systemd-analyze verify` (it must say nothing, since it
// reports bad settings as warnings only), with ExecStart pointed at the
// built binary, and the offline security review, whose exposure must stay
// "OK" (at most 2.0 of 10).
func TestSystemdUnit(t *testing.T) {
	b := needBinary(t)
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		ciRequired(t, "no systemd-analyze: the unit is not checked")
	}
	unit, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "systemd", "raftplane.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("\nExecStart=/usr/local/bin/raftplane\n")) {
		t.Fatal("ExecStart is not /usr/local/bin/raftplane (deploy/README.md installs it there)")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "raftplane")
	if err := copyFile(b, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "raftplane.service")
	unit = bytes.Replace(unit, []byte("ExecStart=/usr/local/bin/raftplane"), []byte("ExecStart="+exe), 1)
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=true", "--threshold=20", path).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0, or an error: %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+ \S+)`).FindSubmatch(out); m != nil {
		t.Logf("systemd-analyze security: exposure %s", m[1])
	} else {
		t.Errorf("no exposure level in:\n%s", out)
	}

	// Every RAFTPLANE_* variable the unit sets is a flag of the binary.
	checkEnvFlags(t, b, regexp.MustCompile(`(?m)^Environment=(RAFTPLANE_[A-Z0-9_]+)=`).FindAllSubmatch(unit, -1))
}

// flagsOf returns the flags `raftplane -help` lists.
func flagsOf(t *testing.T, b string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(b, "-help").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllSubmatch(out, -1) {
		flags[string(m[1])] = true
	}
	if len(flags) < 20 {
		t.Fatalf("raftplane -help lists %d flags:\n%s", len(flags), out)
	}
	return flags
}

// checkEnvFlags checks that each RAFTPLANE_X_Y names the flag -x-y.
func checkEnvFlags(t *testing.T, b string, vars [][][]byte) {
	t.Helper()
	flags := flagsOf(t, b)
	for _, v := range vars {
		name := string(v[1])
		flag := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "RAFTPLANE_"), "_", "-"))
		if !flags[flag] {
			t.Errorf("%s: raftplane has no flag -%s", name, flag)
		}
	}
}
