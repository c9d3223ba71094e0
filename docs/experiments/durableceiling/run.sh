#!/usr/bin/env bash
# The floor of a durable, replicated fan-out on this machine: the shared bench's
# ceiling (a bare Go+gorilla server of the same protocol subset, no durability),
# the same ceiling with durable.go (a publish is delivered only once a majority of
# the three nodes has it on disk: write + fdatasync, the leader's in parallel with
# replication, followers committing on their own sync and the leader's durable
# notice, as raftplane does), and raftplane, one after another in each round, S1
# and S2 shaped as side-by-side.sh shapes them, through side-by-side.sh itself.
# What the durable ceiling adds over the ceiling is what any server that keeps
# acknowledged messages through a crash of a node must wait for before it
# delivers; what raftplane adds over the durable ceiling is its own cost
# (docs/performance.md, "The floor of a durable fan-out").
#
#   docs/experiments/durableceiling/run.sh [rounds]     from the raftplane checkout's root
#
# Env: BENCH (the shared bench folder, default ../shared/bench), PEERS (what
# peers-build.sh built, default /tmp/peers), RATES (S1 sweep, default
# 500,600,800,1000,1200), OUTDIR (results; default a new folder under /tmp).
# Needs the peers built once (raftplane-bench -peers does it, or
# $BENCH/peers-build.sh). Prints, per round and system, the highest S1 rate with
# p99 <= 100 ms and <= 1 s, and S2's p50 / p99.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
BENCH=${BENCH:-$(cd "$root/../shared/bench" && pwd)}
P=${PEERS:-/tmp/peers}
RATES=${RATES:-500,600,800,1000,1200}
OUTDIR=${OUTDIR:-$(mktemp -d /tmp/durableceiling.XXXX)}
rounds=${1:-3}
[ -x "$P/peersbench" ] || { echo "run $BENCH/peers-build.sh (or raftplane-bench -peers) first: no $P/peersbench" >&2; exit 1; }

# PEERS for the durable cells: the same tools, the patched ceiling.
D=$OUTDIR/peers-durable
mkdir -p "$D"
for f in "$P"/*; do
	case $(basename "$f") in ceiling | raftplane) ;; *) ln -sfn "$f" "$D/" ;; esac
done
src=$(mktemp -d)
cp "$BENCH"/ceiling/* "$src"/
chmod -R u+w "$src"
cp "$here/durable.go" "$src"/
(cd "$src" && patch -s -p1 <"$here/ceiling.patch" && go build -o "$D/ceiling" .)
rm -rf "$src"

export RAFTPLANE_MAX_CONNECTIONS_PER_IP=0 RAFTPLANE_MAX_CONNECTIONS_PER_USER=0
cd "$root"
sbs() { "$BENCH/side-by-side.sh" "$@" >>"$OUTDIR/log.txt" 2>&1; }
for r in $(seq 1 "$rounds"); do
	for s in s1 s2; do
		rp=$s-rp; [ "$s" = s1 ] && rp=s1-rp-client
		echo "round $r $s $(date +%T)"
		PEERS=$P OUT=$OUTDIR/ceiling-r$r.jsonl RATES_CEIL=$RATES sbs "$s-ceil"
		logs=$(mktemp -d /tmp/durableceiling-log.XXXX)
		PEERS=$D OUT=$OUTDIR/durable-r$r.jsonl RATES_CEIL=$RATES CEILING_DURABLE_DIR=$logs sbs "$s-ceil"
		rm -rf "$logs"
		PEERS=$P OUT=$OUTDIR/raftplane-r$r.jsonl RATES_RP=$RATES sbs "$rp"
	done
done

python3 - "$OUTDIR" "$rounds" <<'PY'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
print(f"{'round':5} {'system':16} {'S1 @p99<=100ms':>15} {'S1 @p99<=1s':>12} {'S1 p99 at 1000':>15} {'S2 p50 / p99 ms':>16}")
for r in range(1, rounds + 1):
    for sysname in ("ceiling", "durable", "raftplane"):
        lines = [json.loads(l) for l in open(f"{out}/{sysname}-r{r}.jsonl")]
        s1 = [d for d in lines if d["subs"] > 1]
        s2 = [d for d in lines if d["subs"] == 1]
        def ok(bar):  # the highest rate of the sweep up to which every step held the bar
            best = 0
            for d in sorted(s1, key=lambda d: d["target_rate"]):
                if d["lat_p99_us"] > bar * 1000 or d["delivery_ratio"] < 0.999:
                    break
                best = d["target_rate"]
            return best
        at1000 = [d["lat_p99_us"] / 1000 for d in s1 if d["target_rate"] == 1000]
        s2s = " ".join(f"{d['lat_p50_us'] / 1000:.2f} / {d['lat_p99_us'] / 1000:.2f}" for d in s2)
        name = {"durable": "durable ceiling"}.get(sysname, sysname)
        print(f"{r:<5} {name:16} {ok(100):>15} {ok(1000):>12} {(f'{at1000[0]:.0f}' if at1000 else '-'):>15} {s2s:>16}")
print(f"results: {out}")
PY
