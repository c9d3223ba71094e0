package signalr

import (
	"errors"
	"fmt"
	"strconv"
)

// The handshake is always JSON and ends with 0x1E, whatever protocol it
// names: the client's request, then the server's answer (PROTOCOL.md 3.1).

// HandshakeRequest is the client's first record: the hub protocol it will
// speak and that protocol's version.
type HandshakeRequest struct {
	Protocol string
	Version  int
}

// ParseHandshake parses one handshake record (without the trailing 0x1E).
// Property names are case-sensitive, unknown properties are ignored and a
// repeated property takes its last value. protocol must be a non-empty string
// and version an integer in the int32 range; whether they are supported is
// for the caller to decide.
func ParseHandshake(rec []byte) (HandshakeRequest, error) {
	var h HandshakeRequest
	if err := checkJSON("handshake", rec); err != nil {
		return h, err
	}
	it, ok := newObjectIter(rec)
	if !ok {
		return h, errors.New("handshake: not a JSON object")
	}
	var proto, version []byte
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		switch string(memberName(k)) {
		case "protocol":
			proto = v
		case "version":
			version = v
		}
	}
	if proto == nil {
		return h, errors.New("handshake: missing protocol")
	}
	p, ok := jsonStringValue(proto)
	if !ok {
		return h, errors.New("handshake: protocol must be a string")
	}
	if p == "" {
		return h, errors.New("handshake: empty protocol")
	}
	if version == nil {
		return h, errors.New("handshake: missing version")
	}
	n, err := jsonInt(version)
	if err != nil || n < -1<<31 || n > 1<<31-1 {
		return h, errors.New("handshake: version must be a 32-bit integer")
	}
	h.Protocol = p
	h.Version = int(n)
	return h, nil
}

// AppendHandshakeResponse appends the server's answer to a handshake:
// `{}` + 0x1E when errMsg == "", else `{"error":"<escaped>"}` + 0x1E.
func AppendHandshakeResponse(dst []byte, errMsg string) []byte {
	if errMsg == "" {
		return append(dst, '{', '}', RecordSeparator)
	}
	dst = append(dst, `{"error":`...)
	dst = AppendJSONString(dst, errMsg)
	return append(dst, '}', RecordSeparator)
}

// AppendHandshakeRequest appends a client's handshake request,
// {"protocol":<protocol>,"version":<version>} + 0x1E.
func AppendHandshakeRequest(dst []byte, protocol string, version int) []byte {
	dst = append(dst, `{"protocol":`...)
	dst = AppendJSONString(dst, protocol)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, int64(version), 10)
	return append(dst, '}', RecordSeparator)
}

// ErrNotHandshakeResponse is returned by ParseHandshakeResponse for a record
// that has a "type": a hub message where the handshake answer should be.
var ErrNotHandshakeResponse = errors.New("a hub message, not a handshake response")

// ParseHandshakeResponse parses the server's answer to a handshake (one
// record, without its 0x1E). errMsg is the server's "error" ("" when the
// handshake succeeded or the error is null). A record that is not a JSON
// object, or has a non-string error, is an error; so is one with a "type"
// (ErrNotHandshakeResponse). Unknown properties are ignored.
func ParseHandshakeResponse(rec []byte) (errMsg string, err error) {
	if err := checkJSON("handshake response", rec); err != nil {
		return "", err
	}
	it, ok := newObjectIter(rec)
	if !ok {
		return "", errors.New("handshake response: not a JSON object")
	}
	var errVal []byte
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		switch string(memberName(k)) {
		case "type":
			return "", ErrNotHandshakeResponse
		case "error":
			errVal = v
		}
	}
	if errVal == nil || isNull(errVal) {
		return "", nil
	}
	if errMsg, ok = jsonStringValue(errVal); !ok {
		return "", fmt.Errorf("handshake response: error must be a string, got %s", errVal)
	}
	return errMsg, nil
}
