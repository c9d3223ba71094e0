package client

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/raftplane/raftplane/signalr"
)

// The wire format is package signalr's; this file holds what the client
// sends and how it reads the server's records.

// The records this client sends that never change.
var (
	handshakeRecord = signalr.AppendHandshakeRequest(nil, signalr.JSON.Name(), 1)
	pingRecord      = signalr.JSON.AppendPing(nil)
	closeRecord     = signalr.JSON.AppendClose(nil, "", false)
)

// encodeInvocation returns one Invocation record, 0x1E included. Without an
// invocation id it is non-blocking: the server sends no Completion.
func encodeInvocation(id, target string, args []any) ([]byte, error) {
	if target == "" {
		return nil, errors.New("client: empty method name")
	}
	if args == nil {
		args = []any{}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("client: %s: encoding arguments: %w", target, err)
	}
	b, err := signalr.JSON.AppendClientInvocation(nil, id, id != "", target, raw)
	if err != nil { // JSON arguments are written as they are: never
		return nil, fmt.Errorf("client: %s: encoding arguments: %w", target, err)
	}
	return append(b, signalr.RecordSeparator), nil
}

// encodeCompletionError returns a Completion record carrying an error.
func encodeCompletionError(id, msg string) []byte {
	return signalr.JSON.AppendCompletion(nil, id, nil, msg)
}

// splitRecords calls fn for each 0x1E-terminated record of one transport
// message. A transport message must hold only whole records: trailing bytes
// without a separator are an error (the official clients reject them too).
func splitRecords(data []byte, fn func(rec []byte) error) error {
	var err error
	var split signalr.Splitter = signalr.JSON.NewSplitter(len(data))
	split.Feed(data, func(rec []byte, _ signalr.RecordInfo) {
		if err == nil {
			err = fn(rec)
		}
	})
	if err == nil && split.Pending() > 0 {
		return fmt.Errorf("client: incomplete hub message from server: %d bytes without a record separator: %s",
			split.Pending(), abbreviate(data[len(data)-split.Pending():]))
	}
	return err
}

// parseHandshakeResponse checks the first record the server sends.
func parseHandshakeResponse(rec []byte) error {
	msg, err := signalr.ParseHandshakeResponse(rec)
	switch {
	case errors.Is(err, signalr.ErrNotHandshakeResponse):
		return fmt.Errorf("client: expected a handshake response, got a hub message: %s", abbreviate(rec))
	case err != nil:
		return fmt.Errorf("client: malformed handshake response %s: %w", abbreviate(rec), err)
	case msg != "":
		return fmt.Errorf("client: handshake rejected: %s", msg)
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
