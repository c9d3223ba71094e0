// Package upgrade proves that a node of the current tree takes over the data
// and the cluster of the previous release.
//
// It has no code of its own, only a test (upgrade_test.go) that builds
// earlier releases (the tags of releases, newest first: the previous
// release and those before it, or their commits when a clone lacks tags)
// from git and the current tree, then, from each release:
//
//   - restarts a single node of the old build on the new build, on the same
//     data folder: the new build restores the old snapshot and replays the
//     old log entries after it to the same last cursor and digest (so it
//     applied exactly what the old one did), and commits new sends; a
//     release that kept the log in raft.db (before v0.4.0) has it moved to
//     wal/ on the way;
//   - rolls a 3-node cluster of the old build to the new build one node at a
//     time while a publisher sends numbered REST broadcasts and a resuming
//     Go client receives them: every acknowledged send arrives exactly once,
//     in cursor order, and all three nodes end at the same last cursor and
//     digest, so old and new nodes replicate each other's log entries and
//     snapshots in both directions. While a node of the old build runs, the
//     cluster's log format (recorded by the leader, cluster/leader.go
//     raiseFormat) must stay the old build's; once all three run the new
//     build it must be raised to fsm.LogFormat.
//
// When a release changes a log or snapshot format, this is the test that
// must stay green; after tagging a release, add it first in releases (and
// drop the oldest when two rolls cost too much).
package upgrade
