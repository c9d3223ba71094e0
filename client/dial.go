package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/raftplane/raftplane/signalr"
)

// userAgent is sent unless Config.Header sets one.
const userAgent = "raftplane-go-client/1"

// Dial connects to the hub at cfg.URL (or the first of cfg.URLs):
// negotiate, WebSocket upgrade, handshake. When that node fails it tries the
// next of cfg.URLs, in order; an HTTP refusal that every node would give
// (400, 401, 403, 404) ends Dial at once. Each attempt is bounded by
// cfg.HandshakeTimeout, the whole by ctx. On success the connection's
// goroutines are running; Close releases them.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	urls, err := cfg.hubURLs()
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	base := baseHeader(cfg)
	tctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	header, err := authHeader(tctx, cfg, base)
	cancel()
	if err != nil {
		return nil, err
	}
	var errs []error
	for i, u := range urls {
		actx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
		neg, ws, rest, err := dialOnce(actx, cfg, u, header)
		cancel()
		if err == nil {
			return start(cfg, urls, base, i, neg, ws, rest), nil
		}
		if len(urls) == 1 {
			return nil, err
		}
		errs = append(errs, err)
		if ctx.Err() != nil || permanent(err) {
			break
		}
	}
	return nil, fmt.Errorf("client: dial: no node accepted the connection (%d of %d tried): %w", len(errs), len(urls), errors.Join(errs...))
}

// baseHeader is what every request carries: Config.Header and a
// User-Agent. The Authorization header is added per attempt (authHeader).
func baseHeader(cfg Config) http.Header {
	header := cfg.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	if header.Get("User-Agent") == "" {
		header.Set("User-Agent", userAgent)
	}
	return header
}

// authHeader returns base with "Authorization: Bearer <token>" when
// Config.AccessToken gives a token.
func authHeader(ctx context.Context, cfg Config, base http.Header) (http.Header, error) {
	header := base.Clone()
	if cfg.AccessToken != nil {
		tok, err := cfg.AccessToken(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: access token: %w", err)
		}
		if tok != "" {
			header.Set("Authorization", "Bearer "+tok)
		}
	}
	return header, nil
}

// permanent reports whether an HTTP answer refuses the request itself, so
// that another node of the same cluster would refuse it too: a bad request,
// authentication, authorization, an unknown hub, token or connection.
func permanent(err error) bool {
	var he *HTTPError
	if !errors.As(err, &he) {
		return false
	}
	switch he.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return true
	}
	return false
}

// dialOnce connects to one hub URL: negotiate, upgrade, handshake. It
// returns the handshaken socket and the hub messages that came with the
// handshake answer.
func dialOnce(ctx context.Context, cfg Config, hubURL *url.URL, header http.Header) (negotiated, *websocket.Conn, []byte, error) {
	neg, err := negotiate(ctx, cfg.HTTPClient, hubURL, header)
	if err != nil {
		return negotiated{}, nil, nil, err
	}
	ws, err := connect(ctx, cfg.Dialer, hubURL, connectURL(hubURL, neg.token), header)
	if err != nil {
		return negotiated{}, nil, nil, err
	}
	rest, err := handshake(ctx, ws)
	if err != nil {
		ws.Close()
		return negotiated{}, nil, nil, err
	}
	return neg, ws, rest, nil
}

type negotiated struct {
	id    string // connectionId: how others address this connection
	token string // what goes in ?id=
}

// negotiateResponse is the body of a negotiate answer.
type negotiateResponse struct {
	ConnectionID        string `json:"connectionId"`
	ConnectionToken     string `json:"connectionToken"`
	NegotiateVersion    int    `json:"negotiateVersion"`
	AvailableTransports []struct {
		Transport       string   `json:"transport"`
		TransferFormats []string `json:"transferFormats"`
	} `json:"availableTransports"`
	URL   string `json:"url"`
	Error string `json:"error"`
}

// negotiateURL appends /negotiate to the path and negotiateVersion=1 to the
// query, keeping the hub URL's own query string as it is.
func negotiateURL(hubURL *url.URL) *url.URL {
	u := *hubURL
	sep := "/"
	if strings.HasSuffix(u.Path, "/") {
		sep = ""
	}
	u.Path += sep + "negotiate"
	if u.RawPath != "" {
		u.RawPath += sep + "negotiate"
	}
	if !hasQueryKey(u.RawQuery, "negotiateVersion") {
		u.RawQuery = appendQuery(u.RawQuery, "negotiateVersion", "1")
	}
	return &u
}

// connectURL is the WebSocket URL: ws(s), the hub path and query, and id.
func connectURL(hubURL *url.URL, token string) *url.URL {
	u := wsURL(hubURL)
	u.RawQuery = appendQuery(u.RawQuery, "id", token)
	return u
}

// resumeURL is the WebSocket URL of a cursor resume: ws(s), the hub path
// and query, resume=<connection token> and cursor=<last cursor seen>. There
// is no negotiate before it.
func resumeURL(hubURL *url.URL, token, cursor string) *url.URL {
	u := wsURL(hubURL)
	u.RawQuery = appendQuery(appendQuery(u.RawQuery, "resume", token), "cursor", cursor)
	return u
}

func wsURL(hubURL *url.URL) *url.URL {
	u := *hubURL
	if u.Scheme == "https" {
		u.Scheme = "wss"
	} else {
		u.Scheme = "ws"
	}
	return &u
}

func appendQuery(raw, key, value string) string {
	kv := url.QueryEscape(key) + "=" + url.QueryEscape(value)
	if raw == "" {
		return kv
	}
	return raw + "&" + kv
}

// hasQueryKey reports whether the query has key, case-insensitively (the
// server reads query keys that way).
func hasQueryKey(raw, key string) bool {
	q, _ := url.ParseQuery(raw)
	for k := range q {
		if strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

func negotiate(ctx context.Context, hc *http.Client, hubURL *url.URL, header http.Header) (negotiated, error) {
	nu := negotiateURL(hubURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, nu.String(), http.NoBody)
	if err != nil {
		return negotiated{}, fmt.Errorf("client: negotiate: %w", err)
	}
	req.Header = header.Clone()
	resp, err := hc.Do(req)
	if err != nil {
		return negotiated{}, fmt.Errorf("client: negotiate: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return negotiated{}, fmt.Errorf("client: negotiate %s: reading the answer: %w", hubURL.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return negotiated{}, &HTTPError{Op: "negotiate", URL: hubURL.Redacted(), StatusCode: resp.StatusCode, Message: errorText(body)}
	}
	var nr negotiateResponse
	if err := json.Unmarshal(body, &nr); err != nil {
		return negotiated{}, fmt.Errorf("client: negotiate %s: malformed answer %s: %w", hubURL.Redacted(), abbreviate(body), err)
	}
	switch {
	case nr.Error != "":
		return negotiated{}, fmt.Errorf("client: negotiate %s: server error: %s", hubURL.Redacted(), nr.Error)
	case nr.URL != "":
		return negotiated{}, fmt.Errorf("client: negotiate %s: redirect to %q is not supported", hubURL.Redacted(), nr.URL)
	case nr.ConnectionID == "":
		return negotiated{}, fmt.Errorf("client: negotiate %s: answer has no connectionId", hubURL.Redacted())
	}
	ws := false
	for _, t := range nr.AvailableTransports {
		if t.Transport != "WebSockets" {
			continue
		}
		for _, f := range t.TransferFormats {
			ws = ws || f == "Text"
		}
	}
	if !ws {
		return negotiated{}, fmt.Errorf("client: negotiate %s: the server does not offer WebSockets with the Text format", hubURL.Redacted())
	}
	n := negotiated{id: nr.ConnectionID, token: nr.ConnectionToken}
	if nr.NegotiateVersion < 1 {
		n.token = nr.ConnectionID // version 0: the id is the token
	} else if n.token == "" {
		return negotiated{}, fmt.Errorf("client: negotiate %s: version %d answer has no connectionToken", hubURL.Redacted(), nr.NegotiateVersion)
	}
	return n, nil
}

// errorText extracts the message of a raftplane error body
// ({"code":..,"message":..}), or returns the start of the body.
func errorText(body []byte) string {
	var e struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Message != "" {
			return e.Message
		}
		if e.Error != "" {
			return e.Error
		}
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}

// connect makes the WebSocket request to target; hubURL names the hub in
// errors (without the token).
func connect(ctx context.Context, d *websocket.Dialer, hubURL, target *url.URL, header http.Header) (*websocket.Conn, error) {
	ws, resp, err := d.DialContext(ctx, target.String(), header)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			return nil, &HTTPError{Op: "connect", URL: hubURL.Redacted(), StatusCode: resp.StatusCode, Message: errorText(body)}
		}
		return nil, fmt.Errorf("client: connect %s: %w", hubURL.Redacted(), err)
	}
	return ws, nil
}

// handshake sends the handshake request and reads the answer. It returns
// whatever followed the answer in the same transport message: hub messages
// the reader must process first.
func handshake(ctx context.Context, ws *websocket.Conn) ([]byte, error) {
	// Cancelling ctx interrupts a blocked read or write by closing the socket.
	stop := context.AfterFunc(ctx, func() { ws.NetConn().Close() })
	defer stop()
	deadline, _ := ctx.Deadline() // Dial always sets one
	_ = ws.SetWriteDeadline(deadline)
	if err := ws.WriteMessage(websocket.TextMessage, handshakeRecord); err != nil {
		return nil, handshakeErr(ctx, err)
	}
	_ = ws.SetReadDeadline(deadline)
	_, data, err := ws.ReadMessage()
	if err != nil {
		return nil, handshakeErr(ctx, err)
	}
	i := bytes.IndexByte(data, signalr.RecordSeparator)
	if i < 0 {
		return nil, fmt.Errorf("client: incomplete handshake response: %s", abbreviate(data))
	}
	if err := parseHandshakeResponse(data[:i]); err != nil {
		return nil, err
	}
	if !stop() {
		return nil, handshakeErr(ctx, ctx.Err())
	}
	_ = ws.SetWriteDeadline(time.Time{})
	_ = ws.SetReadDeadline(time.Time{})
	return data[i+1:], nil
}

func handshakeErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return fmt.Errorf("client: handshake: timed out: %w", cerr)
		}
		return fmt.Errorf("client: handshake: %w", cerr)
	}
	return fmt.Errorf("client: handshake: %w", err)
}
