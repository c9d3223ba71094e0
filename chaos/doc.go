// Package chaos is the fault-injection suite: real raftplane processes in
// network namespaces (sandbox, netfault), nemeses that kill, pause,
// partition and wipe them (nemesis), a workload that records a history of
// every operation (workload, history), and a checker that proves no
// acknowledged message was lost, duplicated or reordered (check). The
// tests in chaos_test.go drive it (skipped with -short); cmd/chaos-check
// checks a recorded history offline. Nothing imports chaos.
package chaos
