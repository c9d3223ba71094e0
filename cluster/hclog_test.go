package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogFormatValues(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewTextHandler(&buf, nil)), "raft")
	l.Info("snapshot restore progress", "percent-complete", hclog.Fmt("%0.2f%%", 12.5), "plain", 3)
	out := buf.String()
	if !strings.Contains(out, `percent-complete=12.50%`) || !strings.Contains(out, "plain=3") {
		t.Errorf("logged %q, want the hclog.Fmt value rendered", out)
	}
}
