package dashboard

import (
	"math"
	"testing"
	"time"

	"github.com/raftplane/raftplane/hub"
)

func hist(count uint64, buckets map[float64]uint64) hub.Histogram {
	return hub.Histogram{Count: count, Buckets: buckets}
}

func TestQuantile(t *testing.T) {
	before := hist(10, map[float64]uint64{0.001: 5, 0.01: 10, 0.1: 10})
	cases := []struct {
		name   string
		q      float64
		now    hub.Histogram
		want   float64 // ms
		wantOK bool
	}{
		{"nothing new", 0.5, before, 0, false},
		// 10 new, all in (1 ms, 10 ms]: the median is halfway through it.
		{"median inside a bucket", 0.5, hist(20, map[float64]uint64{0.001: 5, 0.01: 20, 0.1: 20}), 5.5, true},
		// 4 new in the first bucket: p50 of 4 is rank 2 of [0, 1 ms].
		{"first bucket from zero", 0.5, hist(14, map[float64]uint64{0.001: 9, 0.01: 14, 0.1: 14}), 0.5, true},
		// Above every bound: the largest bound.
		{"past the last bound", 0.99, hist(12, map[float64]uint64{0.001: 5, 0.01: 10, 0.1: 10}), 100, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := quantile(c.q, c.now, before)
			if ok != c.wantOK || (ok && math.Abs(got-c.want) > 1e-9) {
				t.Fatalf("quantile = %v, %v; want %v, %v", got, ok, c.want, c.wantOK)
			}
		})
	}
}

func TestSampler_Rates(t *testing.T) {
	var s sampler
	t0 := time.Unix(1000, 0)
	st := hub.Stats{Commands: map[string]uint64{"publish": 10}, ClientMessages: 3, RESTMessages: 2, Deliveries: 100,
		Connections: []hub.ConnectionCount{{Count: 2}, {Count: 3}}}
	if _, ok := s.take(st, t0); ok {
		t.Fatal("the first call is the baseline, not a sample")
	}
	st2 := hub.Stats{Commands: map[string]uint64{"publish": 30}, ClientMessages: 13, RESTMessages: 2, Deliveries: 300,
		Connections: []hub.ConnectionCount{{Count: 4}}}
	smp, ok := s.take(st2, t0.Add(2*time.Second))
	if !ok {
		t.Fatal("no sample")
	}
	if smp.Committed != 10 || smp.Received != 5 || smp.Delivered != 100 || smp.Connections != 4 || smp.T != t0.Add(2*time.Second).UnixMilli() {
		t.Fatalf("sample %+v", smp)
	}
	if smp.P50 != nil || smp.P99 != nil {
		t.Fatalf("latency without publishes: %v %v", smp.P50, smp.P99)
	}
	// A counter that went back (a restart behind a proxy) is no negative rate.
	smp, _ = s.take(hub.Stats{}, t0.Add(3*time.Second))
	if smp.Committed != 0 || smp.Delivered != 0 {
		t.Fatalf("sample after a reset %+v", smp)
	}
}

func TestDashboard_HistoryRing(t *testing.T) {
	d := &Dashboard{ring: make([]Sample, 3)}
	for i := range 5 {
		d.record(Sample{T: int64(i)})
		h := d.history()
		if want := min(i+1, 3); len(h) != want || h[len(h)-1].T != int64(i) || h[0].T != int64(i+1-want) {
			t.Fatalf("after %d samples: %v", i+1, h)
		}
	}
}
