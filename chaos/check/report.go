package check

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// kindOrder is the order Summary lists violation kinds in: safety of the
// log first, then delivery, then the run's own health.
var kindOrder = []string{
	KindDivergent, KindReadMismatch, KindDuplicate, KindPhantom, KindAbortedRead, KindLostAck,
	KindNonmonotonic, KindGap, KindUnseenAtEnd, KindUnexpectedDelivery, KindRealtime,
	KindState, KindLeaders, KindAnomaly, KindGroupMismatch, KindMalformed,
}

// summaryExamples is how many violations of each kind Summary prints.
const summaryExamples = 5

// OK reports whether the run had no violation.
func (r Report) OK() bool {
	for _, n := range r.Counts {
		if n > 0 {
			return false
		}
	}
	return true
}

// Total is the number of violations of every kind.
func (r Report) Total() int {
	t := 0
	for _, n := range r.Counts {
		t += n
	}
	return t
}

// Kinds lists the violated kinds, in Summary's order.
func (r Report) Kinds() []string {
	var ks, rest []string
	for _, k := range kindOrder {
		if r.Counts[k] > 0 {
			ks = append(ks, k)
		}
	}
	for k, n := range r.Counts {
		if n > 0 && !slices.Contains(kindOrder, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(ks, rest...)
}

// Summary is the report for a human: the verdict, the run's numbers, then
// each violated kind with its count and a few examples. (A page of output
// written line after line, hence its length.)
func (r Report) Summary() string {
	var b strings.Builder
	if r.OK() {
		b.WriteString("chaos-check: PASS\n")
	} else {
		fmt.Fprintf(&b, "chaos-check: FAIL, %d violation(s) of %d kind(s)\n", r.Total(), len(r.Kinds()))
	}
	fmt.Fprintf(&b, "events: %d over %s\n", r.Events, round(r.Duration))

	if len(r.Faults) == 0 {
		b.WriteString("faults: none\n")
	} else {
		b.WriteString("faults:\n")
		for _, k := range sortedKeys(r.Faults) {
			fmt.Fprintf(&b, "  %-20s %d\n", orDash(k), r.Faults[k])
		}
	}

	p := r.Publishes
	fmt.Fprintf(&b, "publishes: %d invoked (%d ids, %d retries), %d ok, %d fail, %d info, %d open; %d ids acked\n",
		p.Invoked, p.IDs, p.Retries, p.OK, p.Fail, p.Info, p.Open, p.Acked)
	fmt.Fprintf(&b, "indeterminate ids: %d recovered (in the log), %d never seen; canaries: %d/%d acked; %d refused as expired\n",
		p.Recovered, p.Unrecovered, p.CanariesOK, p.Canaries, p.Expired)
	fmt.Fprintf(&b, "latency: p50 %s, p99 %s; max unavailable %s", round(r.LatencyP50), round(r.LatencyP99), round(r.MaxUnavailable))
	if r.MaxUnavailable > 0 {
		fmt.Fprintf(&b, " (t=%s..%s)", dur(r.MaxUnavailableFrom), dur(r.MaxUnavailableTo))
	}
	b.WriteString("\n")

	s := r.Subscribers
	fmt.Fprintf(&b, "subscribers: %d sessions (%d alive at end), %d joins, %d deliveries, %d drops, %d resumes, %d resets, %d leaves\n",
		s.Sessions, s.AliveAtEnd, s.Joins, s.Deliveries, s.Drops, s.Resumes, s.Resets, s.Leaves)

	b.WriteString("reads:")
	if len(r.Reads.PerNode) == 0 {
		b.WriteString(" none")
	}
	for _, n := range sortedKeys(r.Reads.PerNode) {
		fmt.Fprintf(&b, " %s=%d", orDash(n), r.Reads.PerNode[n])
	}
	fmt.Fprintf(&b, "; %d complete node/group read(s)", r.Reads.Complete)
	if len(r.Reads.Incomplete) > 0 {
		fmt.Fprintf(&b, ", incomplete: %s", strings.Join(r.Reads.Incomplete, " "))
	}
	b.WriteString("\n")

	if !r.State.Known {
		b.WriteString("state: unknown (no State events)\n")
	} else {
		fmt.Fprintf(&b, "state: %d node(s), leader(s) %v\n", len(r.State.Nodes), r.State.Leaders)
		for _, n := range r.State.Nodes {
			fmt.Fprintf(&b, "  %-6s %-10s %-12s digest %s\n", n.Node, orDash(n.Role), n.Pos, n.Digest)
		}
	}
	if r.Notes > 0 {
		fmt.Fprintf(&b, "notes: %d\n", r.Notes)
	}

	kinds := r.Kinds()
	if len(kinds) == 0 {
		return b.String()
	}
	b.WriteString("violations:\n")
	shown := map[string]int{}
	examples := map[string][]Violation{}
	for _, v := range r.Violations {
		if shown[v.Kind] < summaryExamples {
			shown[v.Kind]++
			examples[v.Kind] = append(examples[v.Kind], v)
		}
	}
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %s: %d\n", k, r.Counts[k])
		for _, v := range examples[k] {
			fmt.Fprintf(&b, "    - %s\n", v.Detail)
		}
		if more := r.Counts[k] - len(examples[k]); more > 0 {
			fmt.Fprintf(&b, "    ... and %d more\n", more)
		}
	}
	return b.String()
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d
}
