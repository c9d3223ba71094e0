// Package metrics exports a raftplane node to Prometheus: a registry with
// the Go runtime and process collectors and the raftplane_* metrics, and the
// http.Handler that serves it (GET /metrics).
//
// The raftplane metrics are read at scrape time. hub and cluster keep plain
// counters and answer a snapshot (hub.Server.Stats, cluster.Node.Stats); one
// collector asks each once per scrape and turns the snapshot into constant
// metrics. Neither hub nor cluster imports Prometheus, and nothing here runs
// between scrapes: a scrape costs a walk of the node's local connections
// (for the connection counts and queue depths) and a look at Raft's state.
//
// The package mounts nothing: the program serving the node decides where the
// handler goes and whether it needs the API key (raftplane: behind -api-key
// unless -metrics-public). Every metric is listed, with its type, labels and
// meaning, in the README's "Metrics" section.
package metrics
