package hub

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/raftplane/raftplane/fsm"
	"github.com/raftplane/raftplane/signalr"
)

// Upstream webhooks, in the shape of Azure SignalR Service's serverless
// upstream (docs/upstream.md), so a backend written for it (the Azure
// Functions SignalR trigger, or any HTTP server) works unchanged:
//
//   - An invocation of a method that no Go handler and no allowed built-in
//     claims is POSTed to the template with category "messages" and the
//     method as the event; the body is the Invocation message in the
//     connection's hub protocol, without its framing (JSON without the
//     0x1E, MessagePack without the length prefix), as Azure's emulator
//     sends it. The answer to an invocation with an id is a Completion
//     message in that protocol (the Functions trigger writes it framed:
//     both are read), passed to the caller; an empty 2xx answer completes
//     without a result. It runs like a Go method with no effects: on the
//     connection's reader (or one of its MaxParallelInvocations slots), so
//     a slow upstream holds that connection only, and on a
//     stateful-reconnect connection its result goes into the log in an
//     fsm.KindInvoke, which any node replays.
//   - connected (category "connections") is POSTed when a connection opens,
//     before its handshake is answered (events.go): a non-2xx answer, or no
//     answer, refuses the connection.
//   - disconnected is POSTed by the leader when the log closes a connection
//     (events.go), at least once.
//
// Every request carries X-ASRS-Connection-Id, -Hub, -Category, -Event,
// -User-Id, -User-Claims ("type: value" pairs joined by ", ", as .NET's
// Claim.ToString), -Client-Query and -Signature ("sha256=" and the
// upper-case hex HMAC-SHA256 of the connection id keyed with
// Config.APIKey), and X-Raftplane-Event-Id when the event has an id.

// Upstream defaults (Config).
const (
	// DefaultUpstreamTimeout bounds one upstream call.
	DefaultUpstreamTimeout = 10 * time.Second
	// DefaultUpstreamMaxBody bounds the answer read from the upstream.
	DefaultUpstreamMaxBody = 1 << 20
	// maxUpstreamBody is the largest UpstreamMaxBody allowed: a stateful
	// connection's result goes into one log command.
	maxUpstreamBody = 16 << 20
)

// Connection events defaults (Config, events.go).
const (
	// DefaultEventsMarkEvery: progress is recorded every this many events.
	DefaultEventsMarkEvery = 64
	// DefaultEventsMarkInterval: ... or this often, whichever comes first.
	DefaultEventsMarkInterval = time.Second
)

// The upstream's categories and events, as Azure names them.
const (
	categoryMessages    = "messages"
	categoryConnections = "connections"
	eventConnected      = "connected"
	eventDisconnected   = "disconnected"
)

// The request headers (Azure's, and raftplane's event id).
const (
	hdrConnectionID = "X-ASRS-Connection-Id"
	hdrHub          = "X-ASRS-Hub"
	hdrCategory     = "X-ASRS-Category"
	hdrEvent        = "X-ASRS-Event"
	hdrUserID       = "X-ASRS-User-Id"
	hdrUserClaims   = "X-ASRS-User-Claims"
	hdrClientQuery  = "X-ASRS-Client-Query"
	hdrSignature    = "X-ASRS-Signature"
	hdrEventID      = "X-Raftplane-Event-Id"
)

const (
	contentJSON    = "application/json"
	contentMsgpack = "application/x-msgpack"
)

// Serverless message types of the connection events' JSON bodies (Azure's
// OpenConnectionMessage and CloseConnectionMessage).
const (
	typeOpenConnection  = 10
	typeCloseConnection = 11
)

// validateUpstream checks the upstream and events fields.
func (c Config) validateUpstream() []error {
	var errs []error
	if c.Upstream != "" {
		if err := checkUpstreamTemplate(c.Upstream); err != nil {
			errs = append(errs, err)
		}
		if c.UpstreamTimeout <= 0 || c.UpstreamTimeout >= c.ClientTimeout {
			// The connection's reader waits for the upstream and reads
			// nothing else meanwhile, the client's keep-alives included.
			errs = append(errs, fmt.Errorf("UpstreamTimeout (%s) must be positive and less than ClientTimeout (%s)", c.UpstreamTimeout, c.ClientTimeout))
		}
		if c.UpstreamMaxBody < 256 || c.UpstreamMaxBody > maxUpstreamBody {
			errs = append(errs, fmt.Errorf("UpstreamMaxBody (%d) must be between 256 and %d", c.UpstreamMaxBody, maxUpstreamBody))
		}
	}
	if c.EventsMarkEvery < 1 {
		errs = append(errs, fmt.Errorf("EventsMarkEvery (%d) must be at least 1", c.EventsMarkEvery))
	}
	if c.EventsMarkInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("EventsMarkInterval (%s) must be at least 10ms", c.EventsMarkInterval))
	}
	return errs
}

// checkUpstreamTemplate checks that the template makes an absolute http or
// https URL once its parameters are filled in.
func checkUpstreamTemplate(tmpl string) error {
	u, err := url.Parse(expandTemplate(tmpl, "hub", categoryMessages, "event"))
	if err != nil {
		return fmt.Errorf("invalid Upstream URL template %q: %v", tmpl, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("the Upstream URL template (%q) must make an absolute http:// or https:// URL", tmpl)
	}
	return nil
}

// expandTemplate fills in {hub}, {category} and {event}, each escaped as
// Uri.EscapeDataString does (Azure's emulator).
func expandTemplate(tmpl, hub, category, event string) string {
	return strings.NewReplacer("{hub}", escapeData(hub), "{category}", escapeData(category),
		"{event}", escapeData(event)).Replace(tmpl)
}

// escapeData percent-encodes every byte but RFC 3986's unreserved ones, and
// the dots of a whole "." or ".." (a hub or method name a client chose
// must not become a dot segment, which the upstream's server would resolve
// to another path of its own).
func escapeData(s string) string {
	if s == "." || s == ".." {
		return strings.Repeat("%2E", len(s))
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// upstream makes the calls; nil when Config.Upstream is "".
type upstream struct {
	tmpl    string
	client  *http.Client
	own     bool // client is ours: its idle connections are closed at the end
	key     []byte
	timeout time.Duration
	maxBody int64

	calls [2][numUpstreamResults]atomic.Uint64 // by category (0 messages, 1 connections), result
}

// The results upstream calls are counted by.
const (
	upOK          = iota // a 2xx answer
	upStatus             // another status
	upTimeout            // no answer within UpstreamTimeout
	upUnreachable        // no connection, or it broke
	upBadAnswer          // a 2xx answer that is not what the call needs
	upCanceled           // the connection or the leadership ended first
	numUpstreamResults
)

var upstreamResultNames = [numUpstreamResults]string{"ok", "status", "timeout", "unreachable", "bad_answer", "canceled"}

func newUpstream(cfg Config) *upstream {
	if cfg.Upstream == "" {
		return nil
	}
	u := &upstream{tmpl: cfg.Upstream, client: cfg.UpstreamHTTPClient, key: []byte(cfg.APIKey),
		timeout: cfg.UpstreamTimeout, maxBody: cfg.UpstreamMaxBody}
	if u.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64 // calls come from many connections at once
		u.client = &http.Client{
			Transport: tr,
			// A webhook is not redirected: a 3xx is an answer like any
			// other non-2xx, named in the error.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		u.own = true
	}
	return u
}

// closeIdle releases the idle connections of a client the hub made.
func (u *upstream) closeIdle() {
	if u != nil && u.own {
		u.client.CloseIdleConnections()
	}
}

// upstreamCall is one request.
type upstreamCall struct {
	category, event string
	hub, conn, user string
	claims          map[string]any
	query           string
	eventID         string
	contentType     string
	body            []byte
}

// upstreamAnswer is the upstream's answer.
type upstreamAnswer struct {
	status      int
	contentType string
	body        []byte
}

func (a upstreamAnswer) ok() bool { return a.status >= 200 && a.status < 300 }

// upstreamError is a call that got no usable answer; result is one of the
// counted results.
type upstreamError struct {
	result int
	err    error
}

func (e *upstreamError) Error() string { return e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// do makes one call, bounded by UpstreamTimeout and ctx. A non-2xx answer
// is not an error: the caller words it. check, when set, reads a 2xx
// answer; its error makes the call a bad answer.
func (u *upstream) do(ctx context.Context, call upstreamCall, check func(upstreamAnswer) error) (upstreamAnswer, error) {
	cat := 0
	if call.category == categoryConnections {
		cat = 1
	}
	ans, result, err := u.exchange(ctx, call)
	if err == nil && result == upOK && check != nil {
		if err = check(ans); err != nil {
			result, err = upBadAnswer, fmt.Errorf("not a Completion message: %w", err)
		}
	}
	u.calls[cat][result].Add(1)
	if err != nil {
		return ans, &upstreamError{result: result, err: err}
	}
	return ans, nil
}

func (u *upstream) exchange(parent context.Context, call upstreamCall) (upstreamAnswer, int, error) {
	ctx, cancel := context.WithTimeout(parent, u.timeout)
	defer cancel()
	target := expandTemplate(u.tmpl, call.hub, call.category, call.event)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(call.body))
	if err != nil {
		return upstreamAnswer{}, upUnreachable, err
	}
	h := req.Header
	h.Set("Content-Type", call.contentType)
	h.Set("User-Agent", "raftplane")
	h.Set(hdrConnectionID, call.conn)
	h.Set(hdrHub, call.hub)
	h.Set(hdrCategory, call.category)
	h.Set(hdrEvent, headerSafe(call.event)) // a method name is the client's: no CR or LF in a header
	if call.user != "" {
		h.Set(hdrUserID, headerSafe(call.user))
	}
	if cl := claimsHeader(call.claims); cl != "" {
		h.Set(hdrUserClaims, cl)
	}
	if call.query != "" {
		h.Set(hdrClientQuery, call.query)
	}
	if len(u.key) > 0 {
		h.Set(hdrSignature, signature(u.key, call.conn))
	}
	if call.eventID != "" {
		h.Set(hdrEventID, call.eventID)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return upstreamAnswer{}, u.failure(parent, ctx), err
	}
	defer resp.Body.Close()
	ans := upstreamAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type")}
	ans.body, err = io.ReadAll(io.LimitReader(resp.Body, u.maxBody+1))
	if err != nil {
		return ans, u.failure(parent, ctx), fmt.Errorf("reading the answer: %w", err)
	}
	if int64(len(ans.body)) > u.maxBody {
		return ans, upBadAnswer, fmt.Errorf("the answer is larger than %d bytes", u.maxBody)
	}
	if !ans.ok() {
		return ans, upStatus, nil
	}
	return ans, upOK, nil
}

// failure classifies a call that broke: the caller's end, the timeout, or
// the network.
func (u *upstream) failure(parent, ctx context.Context) int {
	switch {
	case parent.Err() != nil:
		return upCanceled
	case ctx.Err() != nil:
		return upTimeout
	}
	return upUnreachable
}

// describe words a failed call for a client or a log line; detail adds the
// underlying error (it may name hosts and addresses: Config.DetailedErrors).
func (u *upstream) describe(err error, detail bool) string {
	var ue *upstreamError
	if !errors.As(err, &ue) {
		return err.Error()
	}
	switch ue.result {
	case upTimeout:
		return fmt.Sprintf("the upstream did not answer within %s", u.timeout)
	case upCanceled:
		return "the call was canceled"
	case upBadAnswer:
		return "the upstream's answer is unusable (" + ue.err.Error() + ")"
	}
	msg := "the upstream is unreachable"
	if detail {
		msg += " (" + ue.err.Error() + ")"
	}
	return msg
}

// statusText words a non-2xx answer.
func statusText(a upstreamAnswer) string {
	return fmt.Sprintf("the upstream answered %d %s", a.status, http.StatusText(a.status))
}

// signature is the X-ASRS-Signature value: Azure's
// Hex_encoded(HMAC_SHA256(accessKey, connection-id)), with one key.
func signature(key []byte, connID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(connID))
	return "sha256=" + strings.ToUpper(hex.EncodeToString(m.Sum(nil)))
}

// claimsHeader renders claims as Azure does: each "type: value", joined by
// ", "; a list gives one pair per element, any other non-string value its
// JSON. Keys are sorted, so the header is the same on every call.
func claimsHeader(claims map[string]any) string {
	if len(claims) == 0 {
		return ""
	}
	keys := make([]string, 0, len(claims))
	for k := range claims {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	add := func(k string, v any) {
		s, ok := v.(string)
		if !ok {
			b, err := json.Marshal(v)
			if err != nil {
				return
			}
			s = string(b)
		}
		parts = append(parts, headerSafe(k)+": "+headerSafe(s))
	}
	for _, k := range keys {
		switch v := claims[k].(type) {
		case []any:
			for _, e := range v {
				add(k, e)
			}
		case []string:
			for _, e := range v {
				add(k, e)
			}
		default:
			add(k, v)
		}
	}
	return strings.Join(parts, ", ")
}

// headerSafe replaces the control characters a header value cannot hold.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// clientQuery is the query a client connected with, as X-ASRS-Client-Query
// carries it ("?a=1&b=2"), without the credentials raftplane reads from it
// (access_token, the connection token id, a resume token). Without an
// upstream it is "": a connection keeps it for its whole life.
func (s *Server) clientQuery(r *http.Request) string {
	if s.up == nil {
		return ""
	}
	return clientQuery(r)
}

// clientQuery computes X-ASRS-Client-Query from a connect request.
func clientQuery(r *http.Request) string {
	if r == nil || r.URL == nil || r.URL.RawQuery == "" {
		return ""
	}
	q := r.URL.Query()
	for _, k := range []string{"access_token", "id", "resume"} {
		q.Del(k)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// upstreamMethod reports whether an invocation of target goes upstream:
// when one is configured and no built-in that clients may call has the
// name (the caller has checked the hub's Go methods). A built-in outside
// Config.ClientMethods claims nothing, so with -client-methods none every
// method goes upstream, as in Azure's serverless mode.
func (c *conn) upstreamMethod(target string) bool {
	if c.srv.up == nil {
		return false
	}
	if b := builtins[strings.ToLower(target)]; b != nil && c.srv.builtinAllowed(b.name) {
		return false
	}
	return true
}

// invokeUpstream runs an invocation through the upstream for a connection
// without stateful reconnect and answers it.
func (c *conn) invokeUpstream(m hubMessage) {
	result, errText := c.callUpstream(m, "")
	if m.HasInvocationID && c.ctx.Err() == nil {
		c.complete(m.InvocationID, result, errText)
	}
}

// statefulUpstream builds the log commands of an upstream invocation on a
// stateful-reconnect connection: a KindInvoke carrying the result (no
// effects), or the refusal text. The event id names the client message,
// the same when the client sends it again after a reconnect.
func (c *conn) statefulUpstream(m hubMessage) ([]fsm.Command, string) {
	if f := c.srv.stream.Format(); f < fsm.FormatInvoke {
		return nil, fmt.Sprintf("%s: not run, the cluster is being upgraded (log format %d, upstream methods need %d); retry once every node runs the new version", m.Target, f, fsm.FormatInvoke)
	}
	result, errText := c.callUpstream(m, "s:"+c.id+":"+strconv.FormatUint(c.sr.inSeq, 10))
	if errText != "" {
		return nil, errText
	}
	return []fsm.Command{{Kind: fsm.KindInvoke, Hub: c.hub, Conn: c.id, Target: m.Target, Args: result}}, ""
}

// callUpstream POSTs an invocation and returns the result for its
// Completion (JSON, nil for none) or the error text.
func (c *conn) callUpstream(m hubMessage, eventID string) (json.RawMessage, string) {
	fail := func(why string) (json.RawMessage, string) {
		return nil, fmt.Sprintf("Invocation of '%s' failed: %s.", m.Target, why)
	}
	if len(m.StreamIDs) > 0 {
		return nil, fmt.Sprintf("%s does not accept streams", m.Target)
	}
	up := c.srv.up
	ct, body, err := upstreamInvocation(c.proto, m)
	if err != nil {
		return fail(err.Error())
	}
	var done hubMessage
	read := func(ans upstreamAnswer) (err error) {
		if !m.HasInvocationID || ans.status == http.StatusNoContent || len(bytes.TrimSpace(ans.body)) == 0 {
			return nil // nothing to answer, or a method without a result
		}
		done, err = parseUpstreamCompletion(c.proto, ans)
		return err
	}
	ans, err := up.do(c.ctx, upstreamCall{category: categoryMessages, event: m.Target, hub: c.hub, conn: c.id,
		user: c.user, claims: c.claims, query: c.query, eventID: eventID, contentType: ct, body: body}, read)
	if err != nil {
		c.logger().Warn("upstream invocation failed", "method", m.Target, "err", err)
		return fail(up.describe(err, c.srv.cfg.DetailedErrors))
	}
	if !ans.ok() {
		c.logger().Debug("upstream refused an invocation", "method", m.Target, "status", ans.status)
		return fail(statusText(ans))
	}
	if done.Error != "" {
		return nil, done.Error
	}
	return done.Result, ""
}

// upstreamInvocation encodes an invocation for the upstream in the
// connection's protocol, without framing. Arguments are the JSON the hub
// keeps: a MessagePack client's are encoded back (bin arrives as a base64
// string, a timestamp as an ISO 8601 string).
func upstreamInvocation(p protocol, m hubMessage) (contentType string, body []byte, err error) {
	b, err := p.codec().AppendClientInvocation(nil, m.InvocationID, m.HasInvocationID, m.Target, joinArgs(m.Arguments))
	if err != nil {
		return "", nil, fmt.Errorf("its arguments cannot be sent: %v", err)
	}
	if p.binary() {
		return contentMsgpack, b, nil
	}
	return contentJSON, b, nil
}

// parseUpstreamCompletion reads the upstream's answer to an invocation: a
// Completion in the protocol its Content-Type names, else the
// connection's; framed (as the Azure Functions trigger writes it) or not.
func parseUpstreamCompletion(p protocol, ans upstreamAnswer) (hubMessage, error) {
	if mt, _, err := mime.ParseMediaType(ans.contentType); err == nil {
		switch mt {
		case contentJSON:
			p = jsonProtocol{}
		case contentMsgpack:
			p = msgpackProtocol{}
		}
	}
	rec := ans.body
	if p.binary() {
		// A length prefix is a VarInt, and the first bytes of an unframed
		// message ([3, ...]: 0x95 0x03) read as one too (405): a body whose
		// length matches its "prefix" is tried framed, then as it is.
		if n, size, err := signalr.ParseLengthPrefix(rec); err == nil && size > 0 && size+n == len(rec) {
			if done, err := completionRecord(p, rec[size:]); err == nil {
				return done, nil
			}
		}
	} else {
		rec = bytes.TrimSpace(rec)
		if i := bytes.IndexByte(rec, recordSeparator); i >= 0 {
			rec = bytes.TrimSpace(rec[:i])
		}
	}
	return completionRecord(p, rec)
}

// completionRecord parses one unframed record that must be a Completion.
func completionRecord(p protocol, rec []byte) (hubMessage, error) {
	done, err := parseRecord(p, rec)
	if err != nil {
		return done, err
	}
	if done.Type != typeCompletion {
		return done, fmt.Errorf("a message of type %d", done.Type)
	}
	return done, nil
}

// upstreamConnected runs the upstream's connected event for a connection
// that opened at cursor at (its event id): a non-2xx answer, or none,
// refuses it with the upstream's message.
func (s *Server) upstreamConnected(c *conn, at fsm.Cursor) error {
	if s.up == nil {
		return nil
	}
	ans, err := s.up.do(c.ctx, upstreamCall{category: categoryConnections, event: eventConnected, hub: c.hub,
		conn: c.id, user: c.user, claims: c.claims, query: c.query, eventID: at.Format(s.stream.Epoch()),
		contentType: contentJSON, body: []byte(`{"type":` + strconv.Itoa(typeOpenConnection) + `}`)}, nil)
	switch {
	case err != nil:
		c.logger().Warn("upstream connected event failed; refusing the connection", "err", err)
		return wireErrorf("Connection refused: %s.", s.up.describe(err, s.cfg.DetailedErrors))
	case !ans.ok():
		c.logger().Debug("the upstream refused a connection", "status", ans.status)
		return wireErrorf("Connection refused: %s", upstreamMessage(ans))
	}
	return nil
}

// maxUpstreamMessage bounds the upstream's own words passed to a client.
const maxUpstreamMessage = 256

// upstreamMessage is what a refusing upstream said: its body when that is
// short text, else its status.
func upstreamMessage(a upstreamAnswer) string {
	b := bytes.TrimSpace(a.body)
	if len(b) == 0 || !utf8.Valid(b) || bytes.ContainsFunc(b, func(r rune) bool { return r < 0x20 && r != '\t' }) {
		return statusText(a) + "."
	}
	if len(b) > maxUpstreamMessage {
		cut := maxUpstreamMessage
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return string(b[:cut]) + "..."
	}
	return string(b)
}

// UpstreamStats is what Server.UpstreamStats reports.
type UpstreamStats struct {
	// Enabled says whether Config.Upstream is set.
	Enabled bool `json:"enabled"`
	// Calls counts this node's upstream calls since it started, by
	// category ("messages", "connections") and result: "ok" (2xx),
	// "status" (another status), "timeout", "unreachable", "bad_answer"
	// (too large, or not a Completion), "canceled" (the connection or the
	// leadership ended first). Every result is listed.
	Calls map[string]map[string]uint64 `json:"calls,omitempty"`
	// Events is the connection events runner's state on this node.
	Events EventsStats `json:"events"`
}

// UpstreamStats returns this node's upstream call counts and events runner
// state, for /api/v1/status and metrics.
func (s *Server) UpstreamStats() UpstreamStats {
	st := UpstreamStats{Enabled: s.up != nil, Events: s.ev.stats(s.stream.Epoch())}
	if s.up == nil {
		return st
	}
	st.Calls = map[string]map[string]uint64{}
	for cat, name := range []string{categoryMessages, categoryConnections} {
		m := map[string]uint64{}
		for r := range numUpstreamResults {
			m[upstreamResultNames[r]] = s.up.calls[cat][r].Load()
		}
		st.Calls[name] = m
	}
	return st
}
