package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestRun_Readyz: a running one-node cluster is ready (the leader, its
// cluster id applied) through the cluster's Readiness port, without the
// API key; an unknown path is a JSON NotFound.
func TestRun_Readyz(t *testing.T) {
	n := startNode(t, "-data", t.TempDir(), "-http", "127.0.0.1:0", "-raft", "127.0.0.1:"+freePort(t),
		"-gossip", "127.0.0.1:"+freePort(t), "-log-level", "warn", "-api-key", "k", "-ready-max-contact", "3s")
	var body struct {
		Status  string `json:"status"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		body.Status, body.Message = "", ""
		code := restJSON(t, http.MethodGet, n.base+"/readyz", nil, &body)
		if code == http.StatusOK && body.Status == "ready" {
			break
		}
		if code != http.StatusServiceUnavailable || body.Code != "ServiceUnavailable" || body.Message == "" {
			t.Fatalf("/readyz: status %d body %+v, want 200 ready or 503 with a reason", code, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still 503 after 30s: %s", body.Message)
		}
		time.Sleep(20 * time.Millisecond) // polling for readiness, not standing for "nothing happened"
	}
	body.Code, body.Message = "", ""
	if code := restJSON(t, http.MethodGet, n.base+"/no/such/path", nil, &body); code != http.StatusNotFound || body.Code != "NotFound" {
		t.Fatalf("GET /no/such/path: status %d body %s, want 404 NotFound", code, fmt.Sprint(body))
	}
}
