package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftplane/raftplane/cluster"
	"github.com/raftplane/raftplane/fsm"
)

const snapshotUsage = `usage:
  raftplane snapshot save [-http host:port] [-api-key-file F] [-ca-file F] [-timeout D] FILE
      asks a running node for a backup (GET /api/v1/snapshot), checks it, writes FILE
  raftplane snapshot inspect FILE
      checks FILE and says what it holds
  raftplane snapshot restore -data DIR [-node-id ID] [-raft host:port] [-advertise HOST] [-raft-advertise host:port] [-index-gap N] FILE
      seeds the empty data folder DIR of a NEW node from FILE: started with the same
      -raft, -advertise and -raft-advertise, it is a one-node cluster with the backup's
      history, connections and groups, under the same cluster id; add nodes with -join
`

// runSnapshot is `raftplane snapshot save|inspect|restore`, like `etcdctl
// snapshot` and `consul snapshot`.
func runSnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, snapshotUsage)
		return errors.New("snapshot: say save, inspect or restore")
	}
	var err error
	switch args[0] {
	case "save":
		err = runSnapshotSave(ctx, args[1:], stdout, stderr)
	case "inspect":
		err = runSnapshotInspect(args[1:], stdout, stderr)
	case "restore":
		err = runSnapshotRestore(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, snapshotUsage)
		return nil
	default:
		fmt.Fprint(stderr, snapshotUsage)
		return fmt.Errorf("snapshot: unknown subcommand %q (want save, inspect or restore)", args[0])
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// parseWithFile parses flags that may come before or after the one
// positional argument (`restore FILE -data DIR` and `restore -data DIR
// FILE` both work) and returns that argument.
func parseWithFile(fs *flag.FlagSet, args []string) (string, error) {
	var file string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		if file != "" {
			return "", fmt.Errorf("%s: one FILE only (got %q and %q)", fs.Name(), file, fs.Arg(0))
		}
		file, args = fs.Arg(0), fs.Args()[1:]
	}
	if file == "" {
		return "", fmt.Errorf("%s: no FILE given", fs.Name())
	}
	return file, nil
}

// runSnapshotSave is `raftplane snapshot save`: flags, the request to the
// node, the download to a temporary file, its checks and the rename, in
// that order. (A command's script, read top to bottom; each step's error
// says which step failed.)
func runSnapshotSave(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("raftplane snapshot save", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", snapEnv("RAFTPLANE_HTTP", "127.0.0.1:5000"), "HTTP address of the node to back up (https://host:port with -cert-file); the leader's backup is the newest")
	key := fs.String("api-key", os.Getenv("RAFTPLANE_API_KEY"), "the node's -api-key (without one, the node serves backups to loopback clients only)")
	keyFile := fs.String("api-key-file", os.Getenv("RAFTPLANE_API_KEY_FILE"), "file holding the node's -api-key")
	caFile := fs.String("ca-file", "", "PEM CA that verifies the node's -cert-file for https:// (default: the system's roots)")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long the whole transfer may take")
	file, err := parseWithFile(fs, args)
	if err != nil {
		return err
	}
	if *key != "" && *keyFile != "" {
		return errors.New("snapshot save: give -api-key or -api-key-file, not both")
	}
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("-api-key-file: %w", err)
		}
		*key = strings.TrimSpace(string(b))
	}
	if *timeout <= 0 {
		return fmt.Errorf("-timeout (%s) must be positive", *timeout)
	}
	client, err := snapClient(*caFile)
	if err != nil {
		return err
	}
	base := *addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/api/v1/snapshot", nil)
	if err != nil {
		return fmt.Errorf("-http %q: %w", *addr, err)
	}
	if *key != "" {
		req.Header.Set("Authorization", "Bearer "+*key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("snapshot save: %s answered %s: %s", *addr, resp.Status, strings.TrimSpace(string(body)))
	}
	// Into a temporary file next to FILE, renamed once checked: FILE is
	// never a partial backup. 0600: a backup holds the cluster secret.
	tmp, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".part-*")
	if err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	n, err := io.Copy(tmp, resp.Body)
	if err != nil {
		return fmt.Errorf("snapshot save: the transfer broke off after %d bytes: %w", n, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	info, err := cluster.InspectBackup(tmp)
	if err != nil {
		return fmt.Errorf("snapshot save: the node sent %d bytes that are not a whole backup: %w", n, err)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	keep = true
	syncDir(filepath.Dir(file))
	fmt.Fprintf(stdout, "saved %s (%d bytes)\n", file, n)
	return printBackupInfo(stdout, info)
}

func runSnapshotInspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("raftplane snapshot inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file, err := parseWithFile(fs, args)
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := cluster.InspectBackup(f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return printBackupInfo(stdout, info)
}

func runSnapshotRestore(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("raftplane snapshot restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", os.Getenv("RAFTPLANE_DATA"), "data folder of the new node: missing or empty (required)")
	nodeID := fs.String("node-id", os.Getenv("RAFTPLANE_NODE_ID"), "the new node's id (default: generated), written to <data>/node-id")
	raftAddr := fs.String("raft", snapEnv("RAFTPLANE_RAFT", "127.0.0.1:7000"), "the -raft the node will start with")
	advertise := fs.String("advertise", os.Getenv("RAFTPLANE_ADVERTISE"), "the -advertise the node will start with")
	raftAdv := fs.String("raft-advertise", os.Getenv("RAFTPLANE_RAFT_ADVERTISE"), "the -raft-advertise the node will start with")
	gap := fs.Uint64("index-gap", cluster.DefaultIndexGap, "start the new log this many entries past the backup's, so that no cursor handed out after the backup names a new message (0: right after it)")
	file, err := parseWithFile(fs, args)
	if err != nil {
		return err
	}
	if *data == "" {
		return errors.New("snapshot restore: -data is required (the new node's data folder)")
	}
	adv, err := raftAdvertised(*raftAddr, *advertise, *raftAdv)
	if err != nil {
		return fmt.Errorf("snapshot restore: %w", err)
	}
	id := *nodeID
	if id == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id = hex.EncodeToString(b[:])
	}
	res, err := cluster.RestoreBackup(file, cluster.RestoreOptions{DataDir: *data, NodeID: id, RaftAdvertise: adv, IndexGap: *gap})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*data, "node-id"), []byte(id+"\n"), 0o600); err != nil {
		return fmt.Errorf("snapshot restore: the data is restored, but writing node-id failed (start with -node-id %s): %w", id, err)
	}
	fmt.Fprintf(stdout, "restored %s into %s: node %s at %s, the only voter\n", file, *data, id, adv)
	if err := printBackupInfo(stdout, res.Backup); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nThe log continues at index %d. Start the node with -data %s and the same -raft/-advertise, without -join;\n"+
		"then start the other nodes with empty data folders and -join it. Keep the old cluster's nodes away from it:\n"+
		"they have the same cluster id.\n", res.Index+1, *data)
	return nil
}

// raftAdvertised is the Raft address a node started with these flags
// advertises (as run computes it).
func raftAdvertised(raftBind, advertise, raftAdvertise string) (string, error) {
	if raftAdvertise != "" {
		return raftAdvertise, nil
	}
	host, port, err := net.SplitHostPort(raftBind)
	if err != nil {
		return "", fmt.Errorf("-raft %q: %w", raftBind, err)
	}
	if advertise != "" {
		host = advertise
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", fmt.Errorf("-raft %q: the node's Raft port must be fixed (not 0) to be restored", raftBind)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "", fmt.Errorf("-raft %q listens on all interfaces: give -advertise (or -raft-advertise) as the node will", raftBind)
	}
	return net.JoinHostPort(host, port), nil
}

// printBackupInfo prints what a backup holds.
func printBackupInfo(w io.Writer, info cluster.BackupInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	s := info.Stream
	fmt.Fprintf(tw, "cluster id\t%s\n", s.Epoch)
	h := info.Header
	fmt.Fprintf(tw, "taken\t%s on node %s (%s, term %d)\n", h.Created.Format(time.RFC3339), h.NodeID, h.RaftState, h.Term)
	fmt.Fprintf(tw, "applied index\t%d\n", s.Applied)
	fmt.Fprintf(tw, "messages\t%d cached (%d bytes), last %s\n", s.Entries, s.Bytes, cursorText(s.Epoch, s.Last))
	floor := cursorText(s.Epoch, s.Floor)
	if s.Floor.IsZero() {
		floor = "the start of the stream (nothing evicted yet)"
	}
	fmt.Fprintf(tw, "resumable from\t%s\n", floor)
	fmt.Fprintf(tw, "connections\t%d\n", info.Connections)
	fmt.Fprintf(tw, "digest\t%x\n", s.Digest)
	fmt.Fprintf(tw, "state\t%d bytes, checksum verified\n", info.Bytes)
	return tw.Flush()
}

func cursorText(epoch string, c fsm.Cursor) string {
	if c.IsZero() {
		return "-"
	}
	return c.Format(epoch)
}

// snapClient is the HTTP client of `snapshot save`.
func snapClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return http.DefaultClient, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-ca-file: %s holds no PEM certificate", caFile)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// syncDir makes a rename in dir durable; a failure only weakens that.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func snapEnv(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}
