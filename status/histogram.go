package status

import (
	"sort"
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds, in seconds, of the buckets of every
// latency histogram a node reports (Latency). They are fixed so that
// observing is a few atomic adds; they span what a step of the commit path
// takes on one machine with fsync off (well under a millisecond) to a
// commit across a leader election.
var LatencyBounds = [...]float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// latencyNanos are LatencyBounds in nanoseconds, for Observe.
var latencyNanos = func() (out [len(LatencyBounds)]time.Duration) {
	for i, b := range LatencyBounds {
		out[i] = time.Duration(b * 1e9)
	}
	return out
}()

// Latency is a lock-free histogram of durations over LatencyBounds; the
// zero value is ready. hub and cluster keep theirs in it.
type Latency struct {
	counts [len(LatencyBounds) + 1]atomic.Uint64 // one per bound, then +Inf
	nanos  atomic.Uint64
}

// Observe adds one duration (a negative one counts as 0).
func (h *Latency) Observe(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(latencyNanos) && latencyNanos[i] < d {
		i++
	}
	h.counts[i].Add(1)
	h.nanos.Add(uint64(d))
}

// Snapshot returns the histogram so far.
func (h *Latency) Snapshot() Histogram {
	counts := make([]uint64, len(h.counts))
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
	}
	return Cumulative(LatencyBounds[:], counts, float64(h.nanos.Load())/1e9)
}

// Cumulative turns per-bucket counts (one per bound, then one above them
// all) into a Histogram.
func Cumulative(bounds []float64, counts []uint64, sum float64) Histogram {
	h := Histogram{Sum: sum, Buckets: make(map[float64]uint64, len(bounds))}
	for i, b := range bounds {
		h.Count += counts[i]
		h.Buckets[b] = h.Count
	}
	h.Count += counts[len(bounds)]
	return h
}

// Quantile estimates the q-quantile (0 < q <= 1) from the buckets, as
// Prometheus's histogram_quantile does: linearly within the bucket that
// holds it, from the bound below. It is 0 for an empty histogram, and the
// largest bound when the quantile lies above it.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.Buckets) == 0 {
		return 0
	}
	bounds := make([]float64, 0, len(h.Buckets))
	for b := range h.Buckets {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	rank := q * float64(h.Count)
	lower, below := 0.0, uint64(0)
	for _, b := range bounds {
		n := h.Buckets[b]
		if float64(n) >= rank {
			if n == below {
				return b
			}
			return lower + (b-lower)*(rank-float64(below))/float64(n-below)
		}
		lower, below = b, n
	}
	return bounds[len(bounds)-1]
}

// Sub is h minus an earlier snapshot of the same histogram: what was
// observed between the two.
func (h Histogram) Sub(earlier Histogram) Histogram {
	out := Histogram{Count: h.Count - earlier.Count, Sum: h.Sum - earlier.Sum, Buckets: make(map[float64]uint64, len(h.Buckets))}
	for b, n := range h.Buckets {
		out.Buckets[b] = n - earlier.Buckets[b]
	}
	return out
}
