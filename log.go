package raftplane

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// parseLevel parses a -log-level.
func parseLevel(level string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", level)
	}
	return lv, nil
}

// NewLogger returns the logger a node makes from -log-level and
// -log-format: "text" (slog's key=value lines) or "json" (one object per
// line, for log collectors), writing to w.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lv, err := parseLevel(level)
	if err != nil {
		return nil, &OptionError{Option: "log-level", Err: err}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, &OptionError{Option: "log-format", Err: fmt.Errorf("%q: want text or json", format)}
}

// logger returns the configured logger, or makes one from LogLevel,
// LogFormat and LogOutput.
func (c Config) logger() (*slog.Logger, error) {
	if c.Logger != nil {
		return c.Logger, nil
	}
	w := c.LogOutput
	if w == nil {
		w = os.Stderr
	}
	return NewLogger(w, c.LogLevel, c.LogFormat)
}

// persistedID returns the node id kept in the data folder, choosing and
// writing one on the first start.
func persistedID(dir string) (string, error) {
	p := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(p)
	if err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	v := hex.EncodeToString(r[:])
	if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
		return "", err
	}
	return v, nil
}
