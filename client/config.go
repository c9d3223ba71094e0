package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
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
)

// writeTimeout bounds one WebSocket write; a write that takes longer ends the
// connection (the same bound as the server's SendTimeout).
const writeTimeout = 10 * time.Second

// closeGrace is how long Close waits for the server to answer the WebSocket
// close frame, and how long the reader keeps reading after a server Close
// message, before the socket is closed regardless.
const closeGrace = 2 * time.Second

// Config configures Dial. Only URL is required; zero values take the
// defaults named on each field.
type Config struct {
	// URL is the hub URL, for example
	// http://127.0.0.1:5000/hubs/chat?user=alice. The schemes http, https, ws
	// and wss are accepted; negotiate uses http(s), the transport ws(s). Its
	// query string is kept on every request.
	URL string
	// AccessToken, when set, is called once per Dial; its result is sent as
	// "Authorization: Bearer <token>" on negotiate and on the WebSocket
	// request. An empty token sends no header.
	AccessToken func(ctx context.Context) (string, error)
	// Header holds extra headers for negotiate and the WebSocket request.
	Header http.Header
	// HandshakeTimeout bounds the whole of Dial: negotiate, the WebSocket
	// upgrade and the SignalR handshake. Default 15s.
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
	if cfg.Dialer == nil {
		cfg.Dialer = &websocket.Dialer{
			Proxy:            http.ProxyFromEnvironment,
			HandshakeTimeout: cfg.HandshakeTimeout,
		}
	}
	return cfg
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
