// Package dashboard is raftplane's live dashboard: one HTML page, embedded
// in the binary with go:embed (hand-written JavaScript and CSS, no
// third-party code and no build step), and the JSON it polls.
//
// The page (GET /dashboard) holds no data and needs no credentials; it asks
// for the API key and sends it as "Authorization: Bearer <key>" to the JSON
// endpoints, which the embedding program guards as it guards the REST API
// (Config.Protect):
//
//   - GET /dashboard/api/state: the cluster as the node asked sees it: every
//     member of the Raft configuration and of gossip (the data of
//     /api/v1/cluster), each with its own report fetched from it (role, term,
//     commit and applied index, connections by transport, dispatcher lag,
//     slow consumers, its recent history), the lag of each, and the
//     connections furthest behind across the cluster. A member that does not
//     answer within Config.PeerTimeout is shown unreachable: a node killed
//     with kill -9 shows so at the next poll. Only members of the Raft
//     configuration are asked (with the caller's credentials): a node that
//     gossip alone knows is listed, not asked.
//   - GET /dashboard/api/node: this node's own report, which the other nodes
//     fetch for their state.
//
// History: a sampler goroutine (Start, Close) reads the hub's counters every
// SampleInterval and keeps the last History samples in a ring: messages per
// second (committed, received, delivered), publish latency p50 and p99 over
// the interval, open connections.
package dashboard
