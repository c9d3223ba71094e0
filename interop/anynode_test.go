//go:build unix

package interop

import (
	"context"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
)

// startRequestBalancer is an HTTP load balancer with no affinity at the
// request level: every request (negotiate, each long poll, each send, the
// event stream, the WebSocket upgrade) goes to the next node in turn.
func startRequestBalancer(t *testing.T, nodes []*server) (string, []*atomic.Int64) {
	t.Helper()
	var next atomic.Uint64
	counts := make([]*atomic.Int64, len(nodes))
	for i := range counts {
		counts[i] = new(atomic.Int64)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			i := int(next.Add(1)-1) % len(nodes)
			counts[i].Add(1)
			pr.SetURL(&url.URL{Scheme: "http", Host: nodes[i].HTTPAddr})
			pr.Out.Host = pr.In.Host
		},
		FlushInterval: -1,
	}
	ts := httptest.NewServer(proxy)
	t.Cleanup(ts.Close)
	return ts.URL, counts
}

// TestOfficialJSClient_TransportsWithoutAffinity runs the transport suite
// (every transport x protocol pair: connect, join, group message, REST
// broadcast, server-side close) through a balancer that sends every HTTP
// request to the next node of three: a long poll, a send or an event stream
// that lands on a node other than the one holding its connection is
// forwarded there, so SSE and long polling need no sticky sessions.
func TestOfficialJSClient_TransportsWithoutAffinity(t *testing.T) {
	node := requireNodeClient(t)
	bin := buildServer(t)
	key := randomKey(t)
	nodes := startCluster(t, bin, 3, "-api-key", key)
	lb, counts := startRequestBalancer(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), nodeTestTimeout)
	defer cancel()
	out, err := runNode(ctx, node, ".", []string{"RAFTPLANE_URL=" + lb, "RAFTPLANE_API_KEY=" + key}, "--test", "transports.test.mjs")
	if err != nil {
		t.Fatalf("node --test transports.test.mjs through a per-request balancer: %v\n%s", err, out)
	}
	for i, c := range counts {
		if c.Load() == 0 {
			t.Errorf("node%d got no request", i+1)
		}
	}
	t.Logf("requests per node: %d %d %d\n%s", counts[0].Load(), counts[1].Load(), counts[2].Load(), out)
}
