#!/usr/bin/env bash
# Interleaved rounds of the ceiling (the shared bench's bare Go+gorilla server of
# the same protocol subset, no durability), the durable ceiling (the same with
# durable.go: a publish is delivered only once a majority of the three nodes has
# it on disk, write + fdatasync, the leader's in parallel with replication,
# followers committing on their own sync and the leader's durable notice, as
# raftplane does) and raftplane, S1 and S2 shaped as side-by-side.sh shapes them.
# Each round is one `raftplane-bench -peers` over the cells s2-ceil, s2-rp,
# s1-ceil and s1-rp-client, which builds the durable ceiling and runs the
# ceiling's cells again with it (cmd/raftplane-bench/durable.go), then prints
# the round's table. What the durable ceiling adds over the ceiling is what any
# server that keeps acknowledged messages through a crash of a node must wait
# for before it delivers; what raftplane adds over the durable ceiling is its
# own cost (docs/performance.md, "The floor of a durable fan-out"; its six
# rounds were run by this script's first version, 4faceaa, which ran the three
# systems' cells one after another within each round).
#
#   docs/experiments/durableceiling/run.sh [rounds]     from the raftplane checkout
#
# Env: RATES (S1's sweep for all three, default 500,600,800,1000,1200), OUTDIR
# (one JSONL per round; default a new folder under /tmp). Needs the peers built
# once (raftplane-bench -peers without -peers-skip-build does it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
RATES=${RATES:-500,600,800,1000,1200}
OUTDIR=${OUTDIR:-$(mktemp -d /tmp/durableceiling.XXXX)}
rounds=${1:-3}
cd "$root"
go build -o "$OUTDIR/raftplane-bench" ./cmd/raftplane-bench
for r in $(seq 1 "$rounds"); do
	echo "round $r $(date +%T)"
	RATES_CEIL=$RATES RAFTPLANE_MAX_CONNECTIONS_PER_IP=0 RAFTPLANE_MAX_CONNECTIONS_PER_USER=0 \
		"$OUTDIR/raftplane-bench" -peers -peers-skip-build -cells s2-ceil,s2-rp,s1-ceil,s1-rp-client \
		-peers-rates-rp "$RATES" -peers-out "$OUTDIR/round-$r.jsonl" 2>>"$OUTDIR/log.txt"
done
echo "results: $OUTDIR"
