package status

import (
	"math"
	"testing"
	"time"
)

// TestLatency_Buckets: observations land in the first bucket
// whose bound is at least them, cumulatively.
func TestLatency_Buckets(t *testing.T) {
	var h Latency
	for _, d := range []time.Duration{0, 100 * time.Microsecond, 101 * time.Microsecond, time.Millisecond, time.Minute, -time.Second} {
		h.Observe(d)
	}
	s := h.Snapshot()
	for _, c := range []struct {
		bound float64
		want  uint64
	}{{0.0001, 3}, {0.00025, 4}, {0.001, 5}, {10, 5}} {
		if got := s.Buckets[c.bound]; got != c.want {
			t.Errorf("bucket %v = %d, want %d", c.bound, got, c.want)
		}
	}
	if s.Count != 6 {
		t.Errorf("count %d, want 6 (a minute is above every bound)", s.Count)
	}
	if want := (time.Minute + time.Millisecond + 201*time.Microsecond).Seconds(); s.Sum < want-1e-9 || s.Sum > want+1e-9 {
		t.Errorf("sum %v, want %v", s.Sum, want)
	}
}

func TestHistogram_Quantile(t *testing.T) {
	h := Histogram{Count: 100, Buckets: map[float64]uint64{0.001: 50, 0.002: 90, 0.004: 100}}
	for _, c := range []struct{ q, want float64 }{
		{0.5, 0.001},   // exactly the first bucket's top
		{0.25, 0.0005}, // halfway into the first bucket, from 0
		{0.7, 0.0015},  // halfway into the second
		{0.95, 0.003},  // halfway into the third
		{1, 0.004},     // the top
	} {
		if got := h.Quantile(c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Quantile(%g) = %g, want %g", c.q, got, c.want)
		}
	}
	above := Histogram{Count: 10, Buckets: map[float64]uint64{0.001: 5}}
	if got := above.Quantile(0.99); got != 0.001 {
		t.Errorf("a quantile above the largest bound: %g, want that bound", got)
	}
	if got := (Histogram{}).Quantile(0.5); got != 0 {
		t.Errorf("empty: %g", got)
	}
	d := h.Sub(Histogram{Count: 40, Sum: 0, Buckets: map[float64]uint64{0.001: 40, 0.002: 40, 0.004: 40}})
	if d.Count != 60 || d.Buckets[0.001] != 10 || d.Buckets[0.004] != 60 {
		t.Errorf("Sub: %+v", d)
	}
}
