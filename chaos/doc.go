// Package chaos is the fault-injection suite: real raftplane processes in
// network namespaces (sandbox, netfault), nemeses that kill, pause,
// partition and wipe them, step their clocks, fill their disks and change
// the membership (nemesis, diskfault), a workload that records a history of every
// operation (workload, history), and a checker that proves no acknowledged
// message was lost, duplicated or reordered (check). The tests in
// chaos_test.go drive it (skipped with -short); cmd/chaos-check checks a
// recorded history offline. Nothing imports chaos.
//
// # Clocks
//
// Go's clock cannot be moved from outside a process, so the node has a
// test hook (cluster/clock.go): the environment variable
// RAFTPLANE_TEST_CLOCK_FILE names a file the node reads at start and every
// 100 ms (cluster.ClockPoll); when the file exists it holds a Go duration
// ("1h", "-30s") added to the wall clock the node stamps commands with,
// as an NTP step would move it (RAFTPLANE_TEST_CLOCK_OFFSET sets a fixed
// offset instead). Only the stamps move: timeouts and Raft's timers run on
// the monotonic clock, which a real step does not move either. The harness
// gives every node its own file (<run>/n<i>/clock) and the clock nemeses
// write it (nodes.Node.SetClock): clock-skew sets the leader's clock off by
// 1 s to 1 h and kills it halfway, so that a node whose clock disagrees
// takes over; clock-jump steps the leader's clock forward, then as far
// behind; clock-scramble sets every clock off by its own amount. A node
// logs each change of its offset, which the scenarios check. The hook is
// for tests only; a node started with it logs a warning.
//
// # Disks
//
// Inside the sandbox every node's data folder is on a disk of its own: a
// size-limited tmpfs (diskfault; 128 MiB, 1 GiB for the soak profile,
// CHAOS_DISK_MB to change it) mounted in the sandbox's private mount
// namespace, so the host never sees it. The disk-full nemeses fill a
// follower's or the leader's disk to the last byte and free it when the
// fault ends; the node must say so (an error in its log, 503 from /readyz),
// refuse writes, never acknowledge what it did not store, and recover. At
// the end of a run each disk's contents are copied beside it
// (<run>/n<i>/disk.kept) before it is unmounted. Without the sandbox there
// are no disks and the disk-full faults are skipped. The disk-fail nemeses make
// every write of a node to its Raft stores fail with EIO through another
// test hook (cluster.DiskFailFileEnv, a file the harness gives each node
// and the nemesis creates and removes): the node must say so as for a full
// disk; a node whose every write fails may stop by itself (hashicorp/raft
// panics when it cannot save its term or vote, a fail-stop), which is not
// an anomaly during the fault, and the heal starts it again on its data.
//
// # Membership
//
// The membership faults (chaos/nemesis/membership.go) change the node set
// while the workload runs, and let the nodes do the rest as in production:
// a node started with -join is added by the leader as a non-voter and
// promoted once caught up, two at a time, up to -voters (3 unless the run
// sets it: a 5-node chaos cluster is 3 voters and 2 non-voters); a node
// stopped with SIGTERM leaves; a node killed for good is removed after
// -reap-after once a spare can take its place. After each change the fault
// waits (60 s at most) until the leader's configuration (GET
// /api/v1/cluster) holds exactly the running nodes, with as many voters as
// the largest odd number within the running count and -voters, and
// journals it. shrink-grow takes 5 running nodes down to 1 by leaves, one
// at a time, and back up with new members (empty data folders);
// grow-shrink does the opposite from a run that starts with fewer nodes
// (Options.Running: the other slots are spares, stopped, with their own
// addresses); replace-voter kills a voter for good and starts a brand-new
// node; join-promote makes a newcomer the only spare, then a voter leaves
// so that the leader must promote it. The clients know every slot and move
// on from one that does not answer, as they do after a kill.
package chaos
