// Package chaos will hold the fault-injection suite: real raftplane
// processes in network namespaces, nemeses (kill, pause, partition, wipe),
// a workload with a history of every operation, and a checker that proves
// no acknowledged message was lost, duplicated or reordered. Nothing
// imports chaos. See ../shared/CHAOS.md for the design.
package chaos
