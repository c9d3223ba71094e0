package deploy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository, relative to this package.
const repoRoot = ".."

// bin is the raftplane binary TestMain built; buildErr says why there is
// none.
var (
	bin      string
	buildErr error
	buildLog string
)

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "raftplane-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, buildLog, buildErr = buildLikeDockerfile(tmp)
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// needBinary fails the test when TestMain could not build the binary.
func needBinary(t *testing.T) string {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building the binary as the Dockerfile does failed: %v\n%s", buildErr, buildLog)
	}
	return bin
}

// buildLikeDockerfile copies the build context (the repository minus what
// .dockerignore excludes) into dir/context and runs there the Dockerfile's
// build command (the RUN after the "# build:" comment), with /out/ put in
// dir/out/. The build is offline (GOPROXY=off): the module cache must hold
// the modules, as it does wherever the tests already built. It returns the
// binary.
func buildLikeDockerfile(dir string) (binPath, log string, err error) {
	stages, err := parseDockerfile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return "", "", err
	}
	build, ok := stages.buildCommand()
	if !ok {
		return "", "", fmt.Errorf("Dockerfile: no RUN after a %q comment", "# build:")
	}
	patterns, err := readDockerignore(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		return "", "", err
	}
	ctxDir, outDir := filepath.Join(dir, "context"), filepath.Join(dir, "out")
	if err := copyContext(repoRoot, ctxDir, patterns); err != nil {
		return "", "", fmt.Errorf("copying the build context: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", "", err
	}
	cmdline := strings.ReplaceAll(build, "/out/", outDir+"/")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", cmdline)
	cmd.Dir = ctxDir
	// As in the build stage: none of the host's GOFLAGS (a -buildvcs=false
	// in its go env would hide what .dockerignore does to the stamp; an
	// empty GOFLAGS falls back to the go env file, hence the explicit
	// default), and no network.
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=auto", "GOPROXY=off", "GOTOOLCHAIN=local", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", string(out), fmt.Errorf("%s: %w", cmdline, err)
	}
	return filepath.Join(outDir, "raftplane"), string(out), nil
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
	marked    bool // preceded by a "# build:" comment
}

type stage struct {
	from, name string
	instr      []instruction
}

// dockerfile is a parsed Dockerfile: its global ARGs (name to default)
// and its stages in order.
type dockerfile struct {
	args   map[string]string
	stages []stage
}

func (d dockerfile) buildCommand() (string, bool) {
	for _, s := range d.stages {
		for _, in := range s.instr {
			if in.marked && in.cmd == "RUN" {
				return in.args, true
			}
		}
	}
	return "", false
}

// final is the stage the image is.
func (d dockerfile) final() stage { return d.stages[len(d.stages)-1] }

// all returns the args of every cmd instruction of s.
func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.instr {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// parseDockerfile reads the instructions, stage by stage (enough of the
// syntax for this repository's Dockerfile: comments, backslash
// continuations).
func parseDockerfile(path string) (dockerfile, error) {
	f, err := os.Open(path)
	if err != nil {
		return dockerfile{}, err
	}
	defer f.Close()
	var (
		d      = dockerfile{args: map[string]string{}}
		cur    strings.Builder
		marked bool
		next   bool
	)
	flush := func() error {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), marked: marked}
		marked = false
		if in.cmd == "FROM" {
			from, name, _ := strings.Cut(in.args, " AS ")
			d.stages = append(d.stages, stage{from: strings.TrimSpace(from), name: strings.TrimSpace(name)})
			return nil
		}
		if in.cmd == "ARG" && len(d.stages) == 0 {
			k, v, _ := strings.Cut(in.args, "=")
			d.args[k] = v
			return nil
		}
		if len(d.stages) == 0 {
			return fmt.Errorf("%s: %s before FROM", path, in.cmd)
		}
		last := &d.stages[len(d.stages)-1]
		last.instr = append(last.instr, in)
		return nil
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			if strings.HasPrefix(trimmed, "# build:") {
				next = true
			}
			continue
		}
		if cur.Len() == 0 && trimmed != "" {
			marked, next = next, false
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return d, err
		}
	}
	if err := flush(); err != nil {
		return d, err
	}
	if len(d.stages) == 0 {
		return d, fmt.Errorf("%s: no FROM", path)
	}
	return d, sc.Err()
}

// ignorePattern is one .dockerignore line.
type ignorePattern struct {
	re     *regexp.Regexp
	negate bool
}

// readDockerignore reads .dockerignore with Docker's rules: paths relative
// to the context root, "**" for any number of folders, "*" and "?" within
// one name, "!" re-including, the last matching line deciding.
func readDockerignore(path string) ([]ignorePattern, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []ignorePattern
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := ignorePattern{}
		if rest, ok := strings.CutPrefix(line, "!"); ok {
			p.negate, line = true, strings.TrimSpace(rest)
		}
		line = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(line)), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		rx, err := regexp.Compile(re.String())
		if err != nil {
			return nil, fmt.Errorf(".dockerignore %q: %w", line, err)
		}
		p.re = rx
		out = append(out, p)
	}
	return out, nil
}

// ignored reports whether rel (slash-separated, relative to the context)
// is left out of the context: a pattern matches it or a folder above it.
func ignored(patterns []ignorePattern, rel string) bool {
	out := false
	for _, p := range patterns {
		for q := rel; ; {
			if p.re.MatchString(q) {
				out = !p.negate
				break
			}
			i := strings.LastIndex(q, "/")
			if i < 0 {
				break
			}
			q = q[:i]
		}
	}
	return out
}

// copyContext copies src into dst, leaving out what the patterns ignore.
func copyContext(src, dst string, patterns []ignorePattern) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return os.MkdirAll(dst, 0o755)
		}
		if ignored(patterns, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return copyFile(path, target, info.Mode().Perm())
		}
		return nil // sockets and the like are not part of a context
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ciRequired fails the test under CI=true, skips it elsewhere: for tools
// the CI installs (.ci/run) but a developer's machine may lack.
func ciRequired(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: required)", msg)
	}
	t.Skip(msg)
}
