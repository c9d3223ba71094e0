package fsm

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestMachine_DedupShrinks: once a burst of ids has left the dedup window,
// the index lets their memory go (the queue's array, the map's table),
// and still knows the ids within the window.
func TestMachine_DedupShrinks(t *testing.T) {
	const burst, kept = 4 * minDedupRebuild, 100
	a := newApplier(t, testConfig(t))
	var logs []*raft.Log
	for i := range burst {
		logs = append(logs, a.entry(withID(publish("h", AudienceAll, "", `[]`), fmt.Sprintf("old-%d", i))))
	}
	a.m.ApplyBatch(logs)
	a.now += int64(20 * time.Second)
	keptAt := map[string]Cursor{}
	for i := range kept {
		id := fmt.Sprintf("new-%d", i)
		keptAt[id] = a.apply1(withID(publish("h", AudienceAll, "", `[]`), id)).Cursor
	}
	if n, peak := len(a.m.st.Dedup), a.m.st.dedupPeak; n != burst+kept || peak != n {
		t.Fatalf("dedup index of %d ids (peak %d), want %d", n, peak, burst+kept)
	}

	// The burst leaves the window: a quarter of the peak is left.
	a.now += int64(DedupWindow - 10*time.Second)
	a.apply1(publish("h", AudienceAll, "", `[]`))
	st := a.m.st
	if len(st.Dedup) != kept || len(st.DedupQ) != kept || st.dedupPeak != kept {
		t.Fatalf("after the burst left: %d ids, queue %d, peak %d; want %d rebuilt", len(st.Dedup), len(st.DedupQ), st.dedupPeak, kept)
	}
	for id, at := range keptAt {
		if r := a.apply1(withID(publish("h", AudienceAll, "", `[]`), id)); !r.Duplicate || r.Cursor != at {
			t.Fatalf("%s after the rebuild: %+v, want a duplicate of %s", id, r, at)
		}
	}
	if r := a.apply1(withID(publish("h", AudienceAll, "", `[]`), "old-1")); r.Duplicate || r.Err != nil {
		t.Fatalf("an id that left the window: %+v, want applied", r)
	}

	// Everything leaves: the queue holds no array.
	a.now += int64(2 * DedupWindow)
	a.apply1(publish("h", AudienceAll, "", `[]`))
	if st := a.m.st; len(st.Dedup) != 0 || st.DedupQ != nil {
		t.Fatalf("after the window: %d ids, queue %v (cap %d); want none and no array", len(st.Dedup), len(st.DedupQ), cap(st.DedupQ))
	}
}
