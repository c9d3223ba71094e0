// Package deploy holds no code: it is the home of the packaging files (the
// Dockerfile at the repository root, compose.yaml, the systemd unit, the
// Kubernetes manifests, the Grafana dashboard; see README.md here) and of
// the tests that use the raftplane binary as an operator would.
//
// TestMain builds the binary once, the way the Dockerfile's build stage
// does: on a copy of the build context that .dockerignore leaves, with the
// Dockerfile's own build command. The tests then check the packaging files
// against that binary (systemd-analyze verify and security on the unit, the
// flags named in compose.yaml and the manifests, the StatefulSet's start
// script) and run real processes: a -join by a DNS name with several
// addresses, a backup under load restored into a new cluster, and the
// recovery of a cluster that lost two of its three voters for good.
package deploy
