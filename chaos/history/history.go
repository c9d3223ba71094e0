// Package history owns the chaos suite's record of a run: one Event per
// operation (publish invoke and outcome, subscriber join, delivery, drop,
// resume, reset, final per-node reads and state, nemesis faults), written as
// JSON lines by a Recorder and read back by Load. The checker works on
// nothing else, so a saved run can be re-checked offline.
package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Event types. A publish is an Invoke followed by exactly one of OK, Fail
// (definitely not applied) or Info (indeterminate: it may or may not be in
// the log). A subscriber session is a Join (per group) followed by
// Deliver, Drop, Resume, and ends with Reset (the server refused the
// resume: the session is over and its gaps are explained), Leave (the
// subscriber closed it) or nothing (alive at the end of the run).
const (
	Invoke  = "invoke"
	OK      = "ok"
	Fail    = "fail"
	Info    = "info"
	Join    = "join"
	Deliver = "deliver"
	Drop    = "drop"
	Resume  = "resume"
	Reset   = "reset"
	Leave   = "leave"
	// Read is one message of a node's retained group history, read after
	// the final heal; ReadDone ends one node's read of one group.
	Read     = "read"
	ReadDone = "read-done"
	// State is a node's final applied position and FSM digest.
	State = "state"
	// FaultStart and FaultEnd bracket a nemesis fault.
	FaultStart = "fault-start"
	FaultEnd   = "fault-end"
	// Note is free text for the report (phase changes, harness decisions).
	Note = "note"
	// Anomaly is something the harness itself saw go wrong (a node exited
	// that no fault killed, a panic or data race in a node's log); Kind
	// names it and Text says what. The checker counts each as a violation.
	Anomaly = "anomaly"
)

// Pos is a position in the log: the Raft index of the entry and the offset
// of the command inside it (a cursor's <index>:<offset>).
type Pos struct {
	Index  uint64 `json:"index"`
	Offset uint32 `json:"offset"`
}

// Less orders positions in log order.
func (p Pos) Less(q Pos) bool {
	if p.Index != q.Index {
		return p.Index < q.Index
	}
	return p.Offset < q.Offset
}

// IsZero reports whether p is the position before the first entry.
func (p Pos) IsZero() bool { return p.Index == 0 && p.Offset == 0 }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Index, p.Offset) }

// ParseCursor reads a raftplane cursor "<epoch>:<index>:<offset>" into its
// epoch and position.
func ParseCursor(c string) (epoch string, p Pos, err error) {
	parts := strings.Split(c, ":")
	if len(parts) != 3 {
		return "", Pos{}, fmt.Errorf("cursor %q: want <epoch>:<index>:<offset>", c)
	}
	if _, err := fmt.Sscanf(parts[1]+" "+parts[2], "%d %d", &p.Index, &p.Offset); err != nil {
		return "", Pos{}, fmt.Errorf("cursor %q: %v", c, err)
	}
	return parts[0], p, nil
}

// Event is one line of the history. Which fields are set depends on Type.
type Event struct {
	// T is nanoseconds since the run started, on the harness's monotonic
	// clock (every client runs in the harness process).
	T int64 `json:"t"`
	// P is the process: "pub-3", "sub-1", "reader", "nemesis", "harness".
	P    string `json:"p"`
	Type string `json:"type"`
	// Node is the node the operation went to ("n2").
	Node string `json:"node,omitempty"`
	// ID is the message id (unique per publish; a retry keeps it).
	ID string `json:"id,omitempty"`
	// Group is the group a publish, join, delivery or read concerns.
	Group string `json:"group,omitempty"`
	// Via is how a publish was sent: "hub" (an invocation) or "rest".
	Via string `json:"via,omitempty"`
	// Pos is the log position of an OK, Join, Deliver, Read, or the last
	// applied position of a State; the resume cursor of a Resume.
	Pos *Pos `json:"pos,omitempty"`
	// Session numbers a subscriber's sessions (a new one after a Reset).
	Session int `json:"session,omitempty"`
	// Err is the reason of a Fail, Info, Drop, Reset or Leave.
	Err string `json:"err,omitempty"`
	// Digest is a node's FSM digest (State); Role its Raft state there
	// ("Leader", "Follower", ...).
	Digest string `json:"digest,omitempty"`
	Role   string `json:"role,omitempty"`
	// Kind, Spec, Targets and Cmds describe a fault (FaultStart/FaultEnd).
	Kind    string   `json:"kind,omitempty"`
	Spec    string   `json:"spec,omitempty"`
	Targets []string `json:"targets,omitempty"`
	Cmds    []string `json:"cmds,omitempty"`
	// Text is a Note's text, or a Fault's outcome.
	Text string `json:"text,omitempty"`
}

// History is every event of a run, in time order.
type History []Event

// Recorder appends events to a JSON lines file. It is safe for concurrent
// use; T is stamped from the recorder's start.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	w     *bufio.Writer
	f     *os.File
	all   History
	err   error
}

// FileName is the history's file name inside a run directory.
const FileName = "history.jsonl"

// NewRecorder creates dir/history.jsonl; start is the run's time zero.
func NewRecorder(dir string, start time.Time) (*Recorder, error) {
	f, err := os.Create(filepath.Join(dir, FileName))
	if err != nil {
		return nil, err
	}
	return &Recorder{start: start, f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// Since is the run clock: nanoseconds since start.
func (r *Recorder) Since() int64 { return int64(time.Since(r.start)) }

// Add stamps e (if its T is 0) and records it.
func (r *Recorder) Add(e Event) {
	if e.T == 0 {
		e.T = r.Since()
	}
	b, err := json.Marshal(e)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, e)
	if err == nil {
		b = append(b, '\n')
		_, err = r.w.Write(b)
	}
	if err != nil && r.err == nil {
		r.err = err
	}
}

// Events returns a copy of everything recorded so far, sorted by T.
func (r *Recorder) Events() History {
	r.mu.Lock()
	h := append(History(nil), r.all...)
	r.mu.Unlock()
	sort.SliceStable(h, func(i, j int) bool { return h[i].T < h[j].T })
	return h
}

// Close flushes and closes the file, returning the first write error.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.w.Flush(); err != nil && r.err == nil {
		r.err = err
	}
	if err := r.f.Close(); err != nil && r.err == nil {
		r.err = err
	}
	return r.err
}

// Load reads a history written by a Recorder, sorted by T.
func Load(path string) (History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Decode(f)
}

// Decode reads JSON lines of events, sorted by T.
func Decode(rd io.Reader) (History, error) {
	var h History
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("history line %d: %v", line, err)
		}
		h = append(h, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.SliceStable(h, func(i, j int) bool { return h[i].T < h[j].T })
	return h, nil
}
