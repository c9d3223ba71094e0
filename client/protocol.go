package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// recordSeparator ends every JSON hub protocol record.
const recordSeparator = 0x1E

// Hub message types used here.
const (
	typeInvocation = 1
	typeCompletion = 3
	typePing       = 6
	typeClose      = 7
)

var (
	handshakeRecord = []byte(`{"protocol":"json","version":1}` + "\x1e")
	pingRecord      = []byte(`{"type":6}` + "\x1e")
	closeRecord     = []byte(`{"type":7}` + "\x1e")
)

// outInvocation is a client-to-server Invocation. Without an invocation id it
// is non-blocking: the server sends no Completion.
type outInvocation struct {
	Type         int    `json:"type"`
	InvocationID string `json:"invocationId,omitempty"`
	Target       string `json:"target"`
	Arguments    []any  `json:"arguments"`
}

// encodeInvocation returns one Invocation record, 0x1E included.
func encodeInvocation(id, target string, args []any) ([]byte, error) {
	if target == "" {
		return nil, errors.New("client: empty method name")
	}
	if args == nil {
		args = []any{}
	}
	b, err := json.Marshal(outInvocation{Type: typeInvocation, InvocationID: id, Target: target, Arguments: args})
	if err != nil {
		return nil, fmt.Errorf("client: %s: encoding arguments: %w", target, err)
	}
	return append(b, recordSeparator), nil
}

// encodeCompletionError returns a Completion record carrying an error.
func encodeCompletionError(id, msg string) []byte {
	b, _ := json.Marshal(struct {
		Type         int    `json:"type"`
		InvocationID string `json:"invocationId"`
		Error        string `json:"error"`
	}{typeCompletion, id, msg})
	return append(b, recordSeparator)
}

// inMessage is a server-to-client hub message; only the fields this client
// uses are decoded and unknown fields are ignored.
type inMessage struct {
	Type           int               `json:"type"`
	InvocationID   *string           `json:"invocationId"`
	Target         string            `json:"target"`
	Arguments      []json.RawMessage `json:"arguments"`
	Headers        map[string]string `json:"headers"`
	Result         json.RawMessage   `json:"result"`
	Error          *string           `json:"error"`
	AllowReconnect bool              `json:"allowReconnect"`

	cursor string // the fast path's "cursor" header (Headers is then nil)
}

// cursorHeader returns the message's "cursor" header.
func (m *inMessage) cursorHeader() string {
	if m.cursor != "" {
		return m.cursor
	}
	return m.Headers["cursor"]
}

// splitRecords calls fn for each 0x1E-terminated record of one transport
// message. A transport message must hold only whole records: trailing bytes
// without a separator are an error (the official clients reject them too).
// 0x1E cannot occur unescaped inside JSON, so splitting on it is exact.
func splitRecords(data []byte, fn func(rec []byte) error) error {
	for len(data) > 0 {
		i := bytes.IndexByte(data, recordSeparator)
		if i < 0 {
			return fmt.Errorf("client: incomplete hub message from server: %d bytes without a record separator: %s",
				len(data), abbreviate(data))
		}
		if err := fn(data[:i]); err != nil {
			return err
		}
		data = data[i+1:]
	}
	return nil
}

// parseHandshakeResponse checks the first record the server sends.
func parseHandshakeResponse(rec []byte) error {
	var r struct {
		Error *string         `json:"error"`
		Type  json.RawMessage `json:"type"`
	}
	if err := json.Unmarshal(rec, &r); err != nil {
		return fmt.Errorf("client: malformed handshake response %s: %w", abbreviate(rec), err)
	}
	if r.Type != nil {
		return fmt.Errorf("client: expected a handshake response, got a hub message: %s", abbreviate(rec))
	}
	if r.Error != nil {
		return fmt.Errorf("client: handshake rejected: %s", *r.Error)
	}
	return nil
}

func abbreviate(b []byte) string {
	const n = 200
	if len(b) > n {
		return fmt.Sprintf("%q...", b[:n])
	}
	return fmt.Sprintf("%q", b)
}
