package main

// The disk alone: S2 with fsync runs three nodes on one machine, whose
// syncs all go to the one disk. diskFloor measures what that disk gives
// the commit path with nothing else running: as many writers as nodes,
// each appending a record and fdatasyncing it at S2's rate, in step. A
// commit needs a majority of the voters' copies durable (with the parallel
// append the leader's sync and the followers' run at the same time), so the
// commit cannot come before the median of the three syncs of a tick: the
// "quorum" figure is that median's distribution, the floor under S2's p99
// with fsync on this machine, before any network, CPU or code.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// diskLine is the JSONL line -peers appends for the probe (scenario
// "disk"), next to the harness's.
type diskLine struct {
	Label        string  `json:"label"`
	Scenario     string  `json:"scenario"`
	Writers      int     `json:"writers"`
	Rate         int     `json:"rate"`
	RecordBytes  int     `json:"record_bytes"`
	DurationS    float64 `json:"duration_s"`
	Syncs        int     `json:"syncs"`
	Skipped      int     `json:"skipped"` // ticks a writer was still syncing the last one (left out)
	SyncP50us    int64   `json:"sync_p50_us"`
	SyncP99us    int64   `json:"sync_p99_us"`
	QuorumP50us  int64   `json:"quorum_p50_us"`
	QuorumP99us  int64   `json:"quorum_p99_us"`
	QuorumP999us int64   `json:"quorum_p999_us"`
}

// diskRecordBytes is about what one S2 entry costs the log: a 120-byte
// payload in a command with its ids, and the record's framing.
const diskRecordBytes = 256

// diskFloor runs writers appenders in dir, rate records/s each, for d, and
// returns the line. Each writer has its own file, as each node has its own
// log; they start each tick together.
func diskFloor(ctx context.Context, dir string, writers, rate int, d time.Duration) (diskLine, error) {
	if writers < 1 || rate < 1 || d <= 0 {
		return diskLine{}, errors.New("disk probe: writers, rate and duration must be positive")
	}
	tmp, err := os.MkdirTemp(dir, "raftplane-disk-")
	if err != nil {
		return diskLine{}, err
	}
	defer os.RemoveAll(tmp)
	files := make([]*os.File, writers)
	for i := range files {
		if files[i], err = os.Create(filepath.Join(tmp, fmt.Sprintf("w%d", i))); err != nil {
			return diskLine{}, err
		}
		defer files[i].Close()
	}
	begin := time.Now()
	pace := newPacer(begin, float64(rate), d)
	ticks := pace.count()
	lat := make([][]time.Duration, writers) // lat[w][tick], -1 when skipped
	starts := make([]chan int, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		lat[w] = make([]time.Duration, ticks)
		for i := range lat[w] {
			lat[w][i] = -1
		}
		starts[w] = make(chan int, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := make([]byte, diskRecordBytes)
			for i := range starts[w] {
				t := time.Now()
				if _, err := files[w].Write(rec); err != nil {
					errs[w] = err
					return
				}
				if err := datasync(files[w]); err != nil {
					errs[w] = err
					return
				}
				lat[w][i] = time.Since(t)
			}
		}()
	}
	sent := 0
	for sent < ticks && pace.wait(ctx, sent) {
		for _, s := range starts {
			select {
			case s <- sent:
			default: // still syncing the last tick's record: skipped (a node would batch it)
			}
		}
		sent++
	}
	for _, s := range starts {
		close(s)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return diskLine{}, err
	}
	if err := ctx.Err(); err != nil {
		return diskLine{}, err
	}
	// A tick's quorum: the median of the writers' syncs of that tick; a
	// tick some writer skipped is left out of it.
	var all, quorum hist
	row := make([]time.Duration, writers)
	skipped := 0
	for i := range sent {
		whole := true
		for w := range writers {
			row[w] = lat[w][i]
			if row[w] < 0 {
				whole = false
				continue
			}
			all.record(row[w].Microseconds())
		}
		if !whole {
			skipped++
			continue
		}
		slices.Sort(row)
		quorum.record(row[writers/2].Microseconds())
	}
	return diskLine{
		Label: fmt.Sprintf("disk%d-s2", writers), Scenario: "disk", Writers: writers, Rate: rate,
		RecordBytes: diskRecordBytes, DurationS: time.Since(begin).Seconds(), Syncs: int(all.n), Skipped: skipped,
		SyncP50us: all.quantile(0.50), SyncP99us: all.quantile(0.99),
		QuorumP50us: quorum.quantile(0.50), QuorumP99us: quorum.quantile(0.99), QuorumP999us: quorum.quantile(0.999),
	}, nil
}

// diskProbeTime is how long -peers measures the disk alone: as long as a
// step of the harness (its DURATION default).
const diskProbeTime = 10 * time.Second

// appendDiskLine runs the probe for d and appends its line to the JSONL
// file out; what it measured is also said on logw.
func appendDiskLine(ctx context.Context, out string, d time.Duration, logw io.Writer) error {
	l, err := diskFloor(ctx, os.TempDir(), 3, 1000, d)
	if err != nil {
		return fmt.Errorf("disk probe: %w", err)
	}
	fmt.Fprintf(logw, "[%s] disk alone: %d writers x %d fdatasync/s in %s: one sync p50=%dus p99=%dus; quorum (median of %d) p50=%dus p99=%dus p999=%dus\n",
		l.Label, l.Writers, l.Rate, os.TempDir(), l.SyncP50us, l.SyncP99us, l.Writers, l.QuorumP50us, l.QuorumP99us, l.QuorumP999us)
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
