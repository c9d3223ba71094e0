package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftplane/raftplane"
	apistatus "github.com/raftplane/raftplane/status" // named so: this package's tests declare a type status
)

// runStatus is `raftplane status`: it prints a node's view of the cluster as
// a table.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("raftplane status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", envOr("RAFTPLANE_HTTP", "127.0.0.1:5000"), "HTTP address of any node")
	key := fs.String("api-key", os.Getenv("RAFTPLANE_API_KEY"), "the node's -api-key, if it has one")
	keyFile := fs.String("api-key-file", os.Getenv("RAFTPLANE_API_KEY_FILE"), "file holding the node's -api-key")
	caFile := fs.String("ca-file", "", "PEM CA that verifies the node's -cert-file when -http is https://host:port (default: the system's roots)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := raftplane.SecretFromFile(key, *keyFile, "-api-key-file"); err != nil {
		return err
	}
	client := http.DefaultClient
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-ca-file: %s holds no PEM certificate", *caFile)
		}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	base := *addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/api/v1/cluster", nil)
	if err != nil {
		return err
	}
	if *key != "" {
		req.Header.Set("Authorization", "Bearer "+*key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status: %s answered %s: %s", *addr, resp.Status, strings.TrimSpace(string(body)))
	}
	var out struct {
		Members []apistatus.Member `json:"members"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("status: unexpected answer: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGOSSIP\tRAFT\tLEADER\tAPPLIED\tLAST CONTACT\tRAFT ADDR\tHTTP ADDR\tGOSSIP ADDR\tCLUSTER ID")
	for _, m := range out.Members {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		state := m.GossipState
		if m.Leaving {
			state += " (leaving)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.ID, state, m.Suffrage, leader, m.Applied,
			m.LastContact, m.RaftAddr, dash(m.HTTPAddr), dash(m.Gossip), dash(m.ClusterID))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
