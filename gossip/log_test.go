package gossip

import (
	"context"
	"log/slog"
	"sync"
	"testing"
)

func TestParseStdLine(t *testing.T) {
	tests := []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Marking b as failed", slog.LevelInfo, "Marking b as failed"},
		{"[WARN] memberlist: Refuting a suspect message", slog.LevelWarn, "Refuting a suspect message"},
		{"[ERR] memberlist: Failed to decrypt", slog.LevelError, "Failed to decrypt"},
		{"[ERROR] memberlist: x", slog.LevelError, "x"},
		{"[ERR] Failed to shutdown transport: x", slog.LevelError, "Failed to shutdown transport: x"},
		{"no prefix at all", slog.LevelInfo, "no prefix at all"},
		{"", slog.LevelInfo, ""},
	}
	for _, tt := range tests {
		level, msg := parseStdLine(tt.line)
		if level != tt.level || msg != tt.msg {
			t.Errorf("parseStdLine(%q) = %s %q, want %s %q", tt.line, level, msg, tt.level, tt.msg)
		}
	}
}

type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func TestStdLogger_Levels(t *testing.T) {
	h := &recordHandler{}
	l := newStdLogger(slog.New(h))
	l.Printf("[DEBUG] memberlist: hidden %d", 1)
	l.Printf("[WARN] memberlist: shown %d", 2)
	l.Print("[ERR] memberlist: bad\n")
	if len(h.records) != 2 {
		t.Fatalf("got %d records, want 2 (debug filtered)", len(h.records))
	}
	if r := h.records[0]; r.Level != slog.LevelWarn || r.Message != "shown 2" {
		t.Fatalf("first record %s %q", r.Level, r.Message)
	}
	if r := h.records[1]; r.Level != slog.LevelError || r.Message != "bad" {
		t.Fatalf("second record %s %q", r.Level, r.Message)
	}
}
