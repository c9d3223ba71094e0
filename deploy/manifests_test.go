package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// loadYAML returns the documents of a YAML file as JSON-shaped values. No
// YAML parser is in go.sum, so python3's (PyYAML) reads it; without one
// the test skips, or fails under CI=true (.ci/run installs python3-yaml).
func loadYAML(t *testing.T, path string) []map[string]any {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		ciRequired(t, "no python3: %s is not parsed", path)
	}
	const script = `import json, sys, yaml
json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None], sys.stdout)`
	if err := exec.Command(py, "-c", "import yaml").Run(); err != nil {
		ciRequired(t, "python3 has no yaml module (python3-yaml): %s is not parsed", path)
	}
	out, err := exec.Command(py, "-c", script, path).Output()
	if err != nil {
		t.Fatalf("%s does not parse: %v\n%s", path, err, stderrOf(err))
	}
	var docs []map[string]any
	if err := json.Unmarshal(out, &docs); err != nil {
		t.Fatal(err)
	}
	return docs
}

func stderrOf(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}

// get walks a JSON-shaped value: get(v, "spec", "template", 0, "name").
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			s, _ := v.([]any)
			if k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

func str(v any, path ...any) string { s, _ := get(v, path...).(string); return s }

func list(v any, path ...any) []any { s, _ := get(v, path...).([]any); return s }

// flagArgs turns ["-a", "x", "-b", "y"] into {a: x, b: y}.
func flagArgs(t *testing.T, args []any) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 0; i < len(args); i += 2 {
		name, _ := args[i].(string)
		if !strings.HasPrefix(name, "-") || i+1 == len(args) {
			t.Fatalf("command %v: %q is not -flag value", args, name)
		}
		out[strings.TrimPrefix(name, "-")] = fmt.Sprint(args[i+1])
	}
	return out
}

// TestCompose checks deploy/compose.yaml: every flag exists; each node
// advertises its own fixed address and presents its own certificate; node1
// bootstraps and the others join through a network alias every node
// holds; only the client port is published, on loopback; the pki service
// makes every file the nodes read.
func TestCompose(t *testing.T) {
	b := needBinary(t)
	docs := loadYAML(t, filepath.Join(repoRoot, "deploy", "compose.yaml"))
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	c := docs[0]
	flags := flagsOf(t, b)
	_, subnet, err := net.ParseCIDR(str(get(c, "networks", "raftplane", "ipam", "config", 0), "subnet"))
	if err != nil {
		t.Fatalf("network subnet: %v", err)
	}
	pkiScript := strings.Join(strings.Fields(fmt.Sprint(list(c, "services", "pki", "command"))), " ")
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("node%d", i)
		svc := get(c, "services", name)
		if svc == nil {
			t.Fatalf("no service %s", name)
		}
		args := flagArgs(t, list(svc, "command"))
		for f := range args {
			if !flags[f] {
				t.Errorf("%s: raftplane has no flag -%s", name, f)
			}
		}
		ip := str(svc, "networks", "raftplane", "ipv4_address")
		if args["advertise"] != ip || !subnet.Contains(net.ParseIP(ip)) {
			t.Errorf("%s: -advertise %q, address %q in %s", name, args["advertise"], ip, subnet)
		}
		if !slices.Contains(list(svc, "networks", "raftplane", "aliases"), any("raftplane-peers")) {
			t.Errorf("%s does not hold the alias raftplane-peers", name)
		}
		switch join := args["join"]; {
		case i == 1 && join != "":
			t.Errorf("node1 has -join %q: nobody would bootstrap", join)
		case i > 1 && join != "raftplane-peers:7946":
			t.Errorf("%s: -join %q, want the alias raftplane-peers:7946", name, join)
		}
		if args["peer-cert-file"] != "/pki/"+name+".pem" || args["peer-key-file"] != "/pki/"+name+"-key.pem" {
			t.Errorf("%s presents %s / %s", name, args["peer-cert-file"], args["peer-key-file"])
		}
		if !strings.Contains(pkiScript, "-ip 172.28.0.1$$i") || !strings.Contains(pkiScript, "-name node$$i") {
			t.Errorf("the pki service does not make node$i certificates for the nodes' addresses: %s", pkiScript)
		}
		for _, f := range []string{"peer-ca-file", "gossip-key-file", "api-key-file"} {
			if base := filepath.Base(args[f]); !strings.Contains(pkiScript, base) {
				t.Errorf("%s reads %s, which the pki service does not make", name, args[f])
			}
		}
		ports := list(svc, "ports")
		if len(ports) != 1 || ports[0] != fmt.Sprintf("127.0.0.1:500%d:5000", i) {
			t.Errorf("%s publishes %v: want only its client port, on loopback", name, ports)
		}
		if !slices.Contains(list(svc, "volumes"), any(name+"-data:/data")) {
			t.Errorf("%s: volumes %v lack %s-data:/data", name, list(svc, "volumes"), name)
		}
	}
}

// TestKubernetes checks deploy/kubernetes: the objects refer to each other
// (names, selectors, named ports), the probes are /healthz and /readyz,
// every RAFTPLANE_* variable is a flag, the pod runs as the image's user,
// and kustomize builds the set when kubectl is there.
func TestKubernetes(t *testing.T) {
	b := needBinary(t)
	dir := filepath.Join(repoRoot, "deploy", "kubernetes")
	kinds := map[string][]map[string]any{}
	for _, f := range []string{"service.yaml", "statefulset.yaml", "poddisruptionbudget.yaml", "kustomization.yaml"} {
		for _, d := range loadYAML(t, filepath.Join(dir, f)) {
			kinds[str(d, "kind")] = append(kinds[str(d, "kind")], d)
		}
	}
	if len(kinds["StatefulSet"]) != 1 || len(kinds["Service"]) != 2 || len(kinds["PodDisruptionBudget"]) != 1 {
		t.Fatalf("objects: %v", keys(kinds))
	}
	sts := kinds["StatefulSet"][0]
	labels := get(sts, "spec", "template", "metadata", "labels").(map[string]any)
	matches := func(sel any) bool {
		m, _ := sel.(map[string]any)
		if len(m) == 0 {
			return false
		}
		for k, v := range m {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	if !matches(get(sts, "spec", "selector", "matchLabels")) {
		t.Error("the StatefulSet's selector does not match its pods")
	}
	if !matches(get(kinds["PodDisruptionBudget"][0], "spec", "selector", "matchLabels")) {
		t.Error("the PodDisruptionBudget does not select the pods")
	}
	if get(kinds["PodDisruptionBudget"][0], "spec", "maxUnavailable") != 1.0 {
		t.Error("the PodDisruptionBudget allows more than one pod down: 3 voters keep a quorum with 2")
	}
	ctr := get(sts, "spec", "template", "spec", "containers", 0)
	ports := map[string]bool{}
	for _, p := range list(ctr, "ports") {
		ports[str(p, "name")] = true
	}
	var headless map[string]any
	for _, svc := range kinds["Service"] {
		if !matches(get(svc, "spec", "selector")) {
			t.Errorf("Service %s does not select the pods", str(svc, "metadata", "name"))
		}
		for _, p := range list(svc, "spec", "ports") {
			if !ports[str(p, "targetPort")] {
				t.Errorf("Service %s targets port %q, which the pod does not name", str(svc, "metadata", "name"), str(p, "targetPort"))
			}
		}
		if str(svc, "spec", "clusterIP") == "None" {
			headless = svc
		}
	}
	if headless == nil || str(headless, "metadata", "name") != str(sts, "spec", "serviceName") {
		t.Fatal("the StatefulSet's serviceName is not the headless Service")
	}
	if get(headless, "spec", "publishNotReadyAddresses") != true {
		t.Error("the headless Service hides pods that are not ready: a new pod could not be found to join")
	}
	if str(ctr, "readinessProbe", "httpGet", "path") != "/readyz" || str(ctr, "livenessProbe", "httpGet", "path") != "/healthz" {
		t.Error("want readiness on /readyz and liveness on /healthz")
	}
	env := map[string]string{}
	var vars [][][]byte
	for _, e := range list(ctr, "env") {
		env[str(e, "name")] = str(e, "value")
		if strings.HasPrefix(str(e, "name"), "RAFTPLANE_") {
			vars = append(vars, [][]byte{nil, []byte(str(e, "name"))})
		}
	}
	checkEnvFlags(t, b, vars)
	if _, ok := env["RAFTPLANE_NODE_ID"]; ok {
		t.Error("RAFTPLANE_NODE_ID is set: a pod that lost its volume would come back as a voter that forgot its log")
	}
	if env["REPLICAS"] != fmt.Sprint(get(sts, "spec", "replicas")) {
		t.Errorf("REPLICAS %q, replicas %v", env["REPLICAS"], get(sts, "spec", "replicas"))
	}
	var dataMount string
	for _, m := range list(ctr, "volumeMounts") {
		if str(m, "name") == "data" {
			dataMount = str(m, "mountPath")
		}
	}
	if dataMount == "" || env["RAFTPLANE_DATA"] != dataMount {
		t.Errorf("RAFTPLANE_DATA %q, data volume at %q", env["RAFTPLANE_DATA"], dataMount)
	}
	if get(sts, "spec", "template", "spec", "securityContext", "runAsUser") != 10001.0 {
		t.Error("the pod does not run as the image's user 10001")
	}
	if k, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.Command(k, "kustomize", dir).CombinedOutput()
		if err != nil {
			t.Errorf("kubectl kustomize: %v\n%s", err, out)
		} else {
			t.Logf("kubectl kustomize: %d objects", bytes.Count(out, []byte("\nkind: "))+1)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestKubernetes_StartScript runs the StatefulSet's start script with a
// stub raftplane and wget, and checks who bootstraps: only pod 0 with no
// data and no ready peer; pod 0 after losing its volume joins the running
// cluster; every other start joins.
func TestKubernetes_StartScript(t *testing.T) {
	docs := loadYAML(t, filepath.Join(repoRoot, "deploy", "kubernetes", "statefulset.yaml"))
	ctr := get(docs[0], "spec", "template", "spec", "containers", 0)
	if cmd := list(ctr, "command"); len(cmd) != 2 || cmd[0] != "/bin/sh" {
		t.Fatalf("command %v: want /bin/sh -ec", cmd)
	}
	script := str(ctr, "args", 0)
	// Kubernetes turns $$ into $ (and expands $(VAR) of the container's
	// env, which the script does not use).
	script = strings.ReplaceAll(script, "$$", "$")
	for _, tc := range []struct {
		pod        string
		hasData    bool
		readyPeers string // the pod ordinals whose /readyz answers
		wantJoin   bool
	}{
		{"raftplane-0", false, "", false},
		{"raftplane-0", false, "2", true},
		{"raftplane-0", true, "", true},
		{"raftplane-1", false, "", true},
		{"raftplane-2", true, "0 1", true},
	} {
		t.Run(fmt.Sprintf("%s data=%v ready=%q", tc.pod, tc.hasData, tc.readyPeers), func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			if err := os.MkdirAll(data, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.hasData {
				if err := os.WriteFile(filepath.Join(data, "raft.db"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			bindir := filepath.Join(dir, "bin")
			if err := os.MkdirAll(bindir, 0o755); err != nil {
				t.Fatal(err)
			}
			stub := func(name, body string) {
				if err := os.WriteFile(filepath.Join(bindir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			stub("raftplane", `echo "ARGS:$*"`)
			// wget ... http://raftplane-N.raftplane-peers...:5000/readyz
			stub("wget", `for a; do url=$a; done
n=${url#http://raftplane-}; n=${n%%.*}
for r in $READY; do [ "$r" = "$n" ] && exit 0; done
exit 1`)
			s := strings.ReplaceAll(script, "/data/raft.db", filepath.Join(data, "raft.db"))
			cmd := exec.Command("/bin/sh", "-ec", s)
			cmd.Env = append(os.Environ(), "PATH="+bindir+":"+os.Getenv("PATH"), "POD_NAME="+tc.pod,
				"POD_NAMESPACE=ns", "REPLICAS=3", "READY="+tc.readyPeers)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("script: %v\n%s", err, out)
			}
			i := bytes.Index(out, []byte("ARGS:"))
			if i < 0 {
				t.Fatalf("raftplane never ran:\n%s", out)
			}
			args := strings.TrimSpace(string(out[i+len("ARGS:"):]))
			joins := args == "-join raftplane-peers.ns.svc:7946"
			if joins != tc.wantJoin || (!joins && args != "") {
				t.Fatalf("raftplane %q, want join=%v\n%s", args, tc.wantJoin, out)
			}
		})
	}
}
