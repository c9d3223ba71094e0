package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/gorilla/websocket"
)

// Defaults that Dial applies to zero Config fields (the official clients'
// values).
const (
	// DefaultHandshakeTimeout bounds Dial when Config.HandshakeTimeout is 0.
	DefaultHandshakeTimeout = 15 * time.Second
	// DefaultKeepAliveInterval is the ping interval when
	// Config.KeepAliveInterval is 0.
	DefaultKeepAliveInterval = 15 * time.Second
	// DefaultServerTimeout is the receive timeout when Config.ServerTimeout
	// is 0.
	DefaultServerTimeout = 30 * time.Second
	// DefaultMessageBuffer is the Messages() capacity when
	// Config.MessageBuffer is 0.
	DefaultMessageBuffer = 1024
	// DefaultResumeTimeout is how long a resume may take when
	// Config.ResumeTimeout is 0: the server's default disconnect timeout,
	// after which it forgets a dropped connection anyway.
	DefaultResumeTimeout = 30 * time.Second
	// DefaultResumeBackoffMin and DefaultResumeBackoffMax bound the wait
	// between resume attempts when Config.ResumeBackoffMin and
	// Config.ResumeBackoffMax are 0.
	DefaultResumeBackoffMin = 50 * time.Millisecond
	DefaultResumeBackoffMax = 2 * time.Second
)

// writeTimeout bounds one WebSocket write; a write that takes longer ends the
// connection (the same bound as the server's SendTimeout).
const writeTimeout = 10 * time.Second

// closeGrace is how long Close waits for the server to answer the WebSocket
// close frame, and how long the reader keeps reading after a server Close
// message, before the socket is closed regardless.
const closeGrace = 2 * time.Second

// Config configures Dial. Only URL (or URLs) is required; zero values take
// the defaults named on each field.
type Config struct {
	// URL is the hub URL, for example
	// http://127.0.0.1:5000/hubs/chat?user=alice. The schemes http, https, ws
	// and wss are accepted; negotiate uses http(s), the transport ws(s). Its
	// query string is kept on every request. It may be empty when URLs is
	// set.
	URL string
	// URLs, optional, is the same hub on several nodes of one cluster (same
	// path and query as URL, other hosts). Dial tries URL (or URLs[0] when
	// URL is empty) first, then the others in order; a resume tries them
	// in turn, starting after the node that failed. URL need not be
	// repeated in URLs.
	URLs []string
	// AccessToken, when set, is called once per Dial and once per resume
	// attempt; its result is sent as "Authorization: Bearer <token>" on
	// negotiate and on the WebSocket request. An empty token sends no
	// header.
	AccessToken func(ctx context.Context) (string, error)
	// Header holds extra headers for negotiate and the WebSocket request.
	Header http.Header
	// HandshakeTimeout bounds one attempt to connect to one node:
	// negotiate, the WebSocket upgrade and the SignalR handshake (with a
	// single URL, the whole of Dial). Default 15s.
	HandshakeTimeout time.Duration
	// KeepAliveInterval: a Ping is sent when nothing was sent for this long,
	// so the server does not time the connection out. Default 15s; negative
	// disables keep-alive pings.
	KeepAliveInterval time.Duration
	// ServerTimeout: the connection fails when nothing was received from the
	// server for this long. Default 30s; negative disables the check.
	ServerTimeout time.Duration
	// MessageBuffer is the capacity of the Messages() channel. Default 1024.
	MessageBuffer int
	// Dialer makes the WebSocket connection. Default: a dialer that uses
	// the proxy from the environment and HandshakeTimeout.
	Dialer *websocket.Dialer
	// HTTPClient sends negotiate. Default http.DefaultClient.
	HTTPClient *http.Client

	// Resume, when set, makes the connection survive an unexpected drop:
	// a transport error, a server timeout, or a server Close that allows
	// reconnecting (a node shutting down, a consumer shed for being too
	// slow). The client then reconnects to the next URL in turn with
	// ?resume=<Token()>&cursor=<Cursor()>, and the server replays what the
	// connection missed; see the package documentation, "Resume". Close by
	// the client never triggers a resume.
	Resume bool
	// ResumeTimeout bounds one resume, from the drop to the resumed
	// transport. Default 30s (the server's default disconnect timeout:
	// after it, the server refuses the resume anyway).
	ResumeTimeout time.Duration
	// ResumeBackoffMin and ResumeBackoffMax bound the wait between two
	// resume attempts: it doubles from Min to Max, with jitter. The first
	// attempt is made at once. Defaults 50ms and 2s.
	ResumeBackoffMin, ResumeBackoffMax time.Duration
	// OnEvent, optional, is told about drops, resumes and resets (see
	// Event). Calls come from one goroutine of the connection, one at a
	// time, with no lock held; a resume waits for OnEvent(EventDropped) to
	// return before its first attempt. Messages keep flowing meanwhile.
	// OnEvent may call any method of the Conn; Close called while OnEvent
	// runs does not wait for it to return (Done still does).
	OnEvent func(Event)
}

// withDefaults returns cfg with zero fields set to their defaults.
func (cfg Config) withDefaults() Config {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.KeepAliveInterval == 0 {
		cfg.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if cfg.ServerTimeout == 0 {
		cfg.ServerTimeout = DefaultServerTimeout
	}
	if cfg.MessageBuffer <= 0 {
		cfg.MessageBuffer = DefaultMessageBuffer
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.ResumeTimeout <= 0 {
		cfg.ResumeTimeout = DefaultResumeTimeout
	}
	if cfg.ResumeBackoffMin <= 0 {
		cfg.ResumeBackoffMin = DefaultResumeBackoffMin
	}
	if cfg.ResumeBackoffMax <= 0 {
		cfg.ResumeBackoffMax = DefaultResumeBackoffMax
	}
	if cfg.ResumeBackoffMax < cfg.ResumeBackoffMin {
		cfg.ResumeBackoffMax = cfg.ResumeBackoffMin
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &websocket.Dialer{
			Proxy:            http.ProxyFromEnvironment,
			HandshakeTimeout: cfg.HandshakeTimeout,
		}
	}
	return cfg
}

// hubURLs returns the URLs to try, in order: URL (or URLs[0]) first, then
// the rest of URLs without repeats.
func (cfg Config) hubURLs() ([]*url.URL, error) {
	var raw []string
	if cfg.URL != "" {
		raw = append(raw, cfg.URL)
	}
	for _, u := range cfg.URLs {
		if u != "" && !slices.Contains(raw, u) {
			raw = append(raw, u)
		}
	}
	if len(raw) == 0 {
		return nil, errors.New("client: Config.URL is empty")
	}
	out := make([]*url.URL, len(raw))
	for i, r := range raw {
		u, err := parseHubURL(r)
		if err != nil {
			return nil, err
		}
		out[i] = u
	}
	return out, nil
}

// parseHubURL checks a hub URL and returns it with an http or https scheme.
func parseHubURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("client: Config.URL is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("client: Config.URL: %w", err)
	}
	switch u.Scheme {
	case "http", "https":
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return nil, fmt.Errorf("client: Config.URL %q: scheme must be http, https, ws or wss", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("client: Config.URL %q has no host", u.Redacted())
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}
