package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// hist is a log-linear latency histogram in microseconds: values below 128
// are exact, above that every power of two is split into 64 buckets, so a
// reported percentile is within 1.6% of the true one. The exact minimum and
// maximum are kept. The zero value is ready to use; it is not safe for
// concurrent use.
type hist struct {
	counts   []uint64
	n        uint64
	min, max int64
}

const histSub = 64 // buckets per power of two above 2*histSub

func histIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - 7 // v>>e is in [64, 128)
	return e*histSub + int(uint64(v)>>uint(e))
}

// histUpper is the largest value that falls in bucket i.
func histUpper(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	e := i/histSub - 1
	m := int64(i - e*histSub)
	return (m+1)<<uint(e) - 1
}

// record adds one value, in microseconds.
func (h *hist) record(us int64) {
	if us < 0 {
		us = 0
	}
	i := histIndex(us)
	if i >= len(h.counts) {
		grown := make([]uint64, i+1+i/4)
		copy(grown, h.counts)
		h.counts = grown
	}
	h.counts[i]++
	if h.n == 0 || us < h.min {
		h.min = us
	}
	if us > h.max {
		h.max = us
	}
	h.n++
}

// merge adds o's values to h.
func (h *hist) merge(o *hist) {
	if o.n == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		grown := make([]uint64, len(o.counts))
		copy(grown, h.counts)
		h.counts = grown
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
}

// quantile returns the value at quantile q (0..1) in microseconds, using the
// nearest-rank definition: the smallest value with at least ceil(q*n) values
// at or below it. The result is the upper bound of its bucket, clamped to
// the exact maximum; 0 when empty.
func (h *hist) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank >= h.n {
		return h.max
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			v := histUpper(i)
			if v > h.max {
				v = h.max
			}
			if v < h.min {
				v = h.min
			}
			return v
		}
	}
	return h.max
}

// exactQuantile is the nearest-rank quantile of sorted values (for tests
// and small samples).
func exactQuantile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

// msOf turns microseconds into milliseconds.
func msOf(us int64) float64 { return float64(us) / 1000 }

// pacer spaces sends at a fixed rate from a start time: send i is due at
// start + i/rate. A sender that falls behind sends at once (open loop), so
// a slow server shows up as latency and as an achieved rate under the
// target, never as a silently lower offered rate.
type pacer struct {
	start    time.Time
	rate     float64       // sends per second
	interval time.Duration // 1/rate, for display
	end      time.Time     // no send is due at or after end
}

func newPacer(start time.Time, rate float64, d time.Duration) pacer {
	if rate <= 0 {
		rate = 1
	}
	return pacer{start: start, rate: rate, interval: time.Duration(float64(time.Second) / rate), end: start.Add(d)}
}

// due returns when send i is due and whether it is inside the window. It
// is computed from i directly (not by adding a rounded interval), so no
// rounding error accumulates.
func (p pacer) due(i int) (time.Time, bool) {
	t := p.start.Add(time.Duration(float64(i) * float64(time.Second) / p.rate))
	return t, t.Before(p.end)
}

// count is how many sends fall inside the window.
func (p pacer) count() int {
	n := int(p.end.Sub(p.start).Seconds() * p.rate)
	for n > 0 {
		if _, ok := p.due(n - 1); ok {
			break
		}
		n--
	}
	for {
		if _, ok := p.due(n); !ok {
			return n
		}
		n++
	}
}

// wait sleeps until send i is due; false when it is outside the window or
// ctx ended.
func (p pacer) wait(ctx context.Context, i int) bool {
	t, ok := p.due(i)
	if !ok {
		return false
	}
	if d := time.Until(t); d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-ctx.Done():
			return false
		}
	}
	return ctx.Err() == nil
}

// bitset is a growable set of small non-negative integers.
type bitset []uint64

func (b *bitset) set(i int) bool {
	w := i / 64
	if w >= len(*b) {
		grown := make(bitset, w+1+w/2)
		copy(grown, *b)
		*b = grown
	}
	m := uint64(1) << uint(i%64)
	had := (*b)[w]&m != 0
	(*b)[w] |= m
	return had
}

func (b bitset) has(i int) bool {
	w := i / 64
	return w < len(b) && b[w]&(1<<uint(i%64)) != 0
}

func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// andCount is |b ∩ o|.
func (b bitset) andCount(o bitset) int {
	n := 0
	for i := 0; i < len(b) && i < len(o); i++ {
		n += bits.OnesCount64(b[i] & o[i])
	}
	return n
}

// kv is one named figure of a result, in display order.
type kv struct {
	Key string
	Val any
}

// Result is what one scenario (or one rate of a sweep) measured.
type Result struct {
	Scenario string
	Params   []kv
	Metrics  []kv
	// Holds is set by the scenarios that have a pass bar (fanout, latency).
	Holds *bool
	// CPU is the CPU time (user+system, seconds) each process used during
	// the scenario: "tool" and the nodes the tool started.
	CPU   []kv
	Notes []string
}

func (r *Result) param(k string, v any)  { r.Params = append(r.Params, kv{k, v}) }
func (r *Result) metric(k string, v any) { r.Metrics = append(r.Metrics, kv{k, v}) }
func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// get returns the value of a metric (or param) by key.
func (r *Result) get(k string) (any, bool) {
	for _, m := range r.Metrics {
		if m.Key == k {
			return m.Val, true
		}
	}
	for _, p := range r.Params {
		if p.Key == k {
			return p.Val, true
		}
	}
	return nil, false
}

// num returns a numeric metric as float64 (NaN when missing).
func (r *Result) num(k string) float64 {
	v, ok := r.get(k)
	if !ok {
		return math.NaN()
	}
	switch x := v.(type) {
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case float64:
		return x
	}
	return math.NaN()
}

// fmtVal formats one value for the table.
func fmtVal(v any) string {
	switch x := v.(type) {
	case float64:
		return fmtFloat(x)
	case bool:
		if x {
			return "yes"
		}
		return "no"
	case time.Duration:
		return x.String()
	case nil:
		return "-"
	}
	return fmt.Sprint(v)
}

// fmtFloat prints 3 significant decimals at most, never in exponent form.
func fmtFloat(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "-"
	case math.Abs(x) >= 1000:
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	s := strconv.FormatFloat(x, 'f', 3, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// round3 rounds to 3 decimals, for JSON.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// writeTable writes a header line and one row per result, the columns of
// each scenario in their own block (results of different scenarios get
// their own header).
func writeTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	prev := ""
	for i := range results {
		r := &results[i]
		cols := tableColumns(r)
		hdr := make([]string, len(cols))
		row := make([]string, len(cols))
		for j, c := range cols {
			hdr[j], row[j] = c.Key, fmtVal(c.Val)
		}
		if h := strings.Join(hdr, "\t"); h != prev {
			if prev != "" {
				fmt.Fprintln(tw)
			}
			fmt.Fprintln(tw, h)
			prev = h
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func tableColumns(r *Result) []kv {
	cols := []kv{{"scenario", r.Scenario}}
	cols = append(cols, r.Params...)
	cols = append(cols, r.Metrics...)
	if r.Holds != nil {
		cols = append(cols, kv{"holds", *r.Holds})
	}
	for _, c := range r.CPU {
		cols = append(cols, kv{"cpu_" + c.Key + "_s", c.Val})
	}
	return cols
}

// jsonLine renders a result as one line of JSON with its keys in display
// order.
func jsonLine(r *Result) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"scenario":`)
	if err := writeJSONValue(&b, r.Scenario); err != nil {
		return nil, err
	}
	obj := func(name string, kvs []kv) error {
		fmt.Fprintf(&b, `,%q:{`, name)
		for i, p := range kvs {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:", p.Key)
			if err := writeJSONValue(&b, p.Val); err != nil {
				return err
			}
		}
		b.WriteByte('}')
		return nil
	}
	if err := obj("params", r.Params); err != nil {
		return nil, err
	}
	if err := obj("metrics", r.Metrics); err != nil {
		return nil, err
	}
	if r.Holds != nil {
		fmt.Fprintf(&b, `,"holds":%t`, *r.Holds)
	}
	if err := obj("cpu_s", r.CPU); err != nil {
		return nil, err
	}
	if len(r.Notes) > 0 {
		b.WriteString(`,"notes":`)
		if err := writeJSONValue(&b, r.Notes); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeJSONValue(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			b.WriteString("null")
			return nil
		}
		v = round3(x)
	case time.Duration:
		v = x.String()
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b.Write(enc)
	return nil
}
