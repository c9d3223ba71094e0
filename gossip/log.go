package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// slogWriter turns memberlist's *log.Logger output into slog records. A
// log.Logger makes exactly one Write per Printf call, so each Write is one
// line: "[LEVEL] memberlist: message\n".
type slogWriter struct {
	l *slog.Logger
}

// newStdLogger returns a *log.Logger for memberlist that writes through l,
// tagged lib=memberlist.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l: l.With("lib", "memberlist")}, "", 0)
}

func (w slogWriter) Write(p []byte) (int, error) {
	level, msg := parseStdLine(string(bytes.TrimRight(p, "\r\n")))
	if w.l.Enabled(context.Background(), level) {
		w.l.Log(context.Background(), level, msg)
	}
	return len(p), nil
}

// stdLevels maps memberlist's line prefixes to slog levels.
var stdLevels = []struct {
	prefix string
	level  slog.Level
}{
	{"[DEBUG] ", slog.LevelDebug},
	{"[TRACE] ", slog.LevelDebug},
	{"[INFO] ", slog.LevelInfo},
	{"[WARN] ", slog.LevelWarn},
	{"[ERR] ", slog.LevelError},
	{"[ERROR] ", slog.LevelError},
}

// parseStdLine splits a memberlist log line into its level and message,
// dropping the "memberlist: " tag. Lines without a known prefix are Info.
func parseStdLine(line string) (slog.Level, string) {
	level := slog.LevelInfo
	for _, s := range stdLevels {
		if rest, ok := strings.CutPrefix(line, s.prefix); ok {
			level, line = s.level, rest
			break
		}
	}
	return level, strings.TrimPrefix(line, "memberlist: ")
}
