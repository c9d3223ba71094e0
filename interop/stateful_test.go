//go:build unix

package interop

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// startSkippingBalancer is a round-robin TCP balancer with a health check's
// effect: a backend that refuses the connection is skipped for the next.
func startSkippingBalancer(t *testing.T, backends ...string) *relay {
	t.Helper()
	r := newRelay(t)
	var next atomic.Uint64
	r.serve(func() (net.Conn, error) {
		var err error
		for range backends {
			i := int(next.Add(1)-1) % len(backends)
			var c net.Conn
			if c, err = net.Dial("tcp", backends[i]); err == nil {
				return c, nil
			}
		}
		return nil, err
	})
	t.Cleanup(r.close)
	return r
}

// TestOfficialJSClient_StatefulReconnectAnyNode: the official client with
// withStatefulReconnect() and withAutomaticReconnect() behind a round-robin
// balancer; the node holding its connection is killed with kill -9 while
// REST publishes and the client's own invocations flow. The client's single
// reconnect lands on another node, which continues the connection: every
// message exactly once, in cursor order, every invocation completed once,
// the same connection id, no automatic reconnect. JSON and MessagePack, and
// a graceful stop of the node (which drops stateful sockets without a Close
// so that the clients continue elsewhere).
func TestOfficialJSClient_StatefulReconnectAnyNode(t *testing.T) {
	node := requireNodeClient(t)
	bin := buildServer(t)
	for _, tc := range []struct{ proto, fault string }{{"json", "kill"}, {"messagepack", "kill"}, {"json", "term"}} {
		proto := tc.proto
		t.Run(proto+"/"+tc.fault, func(t *testing.T) {
			nodes := startCluster(t, bin, 3)
			var backends, urls []string
			for _, n := range nodes {
				backends = append(backends, n.HTTPAddr)
				urls = append(urls, n.URL)
			}
			lb := startSkippingBalancer(t, backends...)
			control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				id := r.URL.Query().Get("conn")
				for _, n := range nodes {
					var ci struct {
						Node string `json:"node"`
					}
					if err := getJSON(n, "/api/v1/hubs/chat/connections/"+id, &ci); err != nil {
						continue
					}
					for _, holder := range nodes {
						st, err := getStatus(holder)
						if err == nil && st.Node.NodeID == ci.Node {
							if tc.fault == "term" {
								holder.Stop(t) // SIGTERM: it drops its stateful sockets without a Close
							} else {
								holder.Kill(t)
							}
							fmt.Fprintf(w, "%s (holding %s)", holder.Name, id)
							return
						}
					}
				}
				http.Error(w, "no node holds "+id, http.StatusNotFound)
			}))
			defer control.Close()
			ctx, cancel := context.WithTimeout(context.Background(), nodeTestTimeout)
			defer cancel()
			out, err := runNode(ctx, node, ".", []string{"RAFTPLANE_URL=" + lb.URL(), "RAFTPLANE_NODES=" + strings.Join(urls, ","),
				"RAFTPLANE_CONTROL=" + control.URL, "RAFTPLANE_PROTOCOL=" + proto, "RAFTPLANE_FAULT=" + tc.fault}, "--test", "stateful.test.mjs")
			if err != nil {
				t.Fatalf("node --test stateful.test.mjs: %v\n%s", err, out)
			}
			t.Logf("%s", out)
		})
	}
}
