package raftplane

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/raftplane/raftplane/certs"
)

// clientTLS returns the TLS config of the -http listener (HTTPS and WSS for
// clients and the REST API) from -cert-file and -key-file, which are
// reloaded when they change (certs.Reloader), so a renewed certificate
// needs no restart. With -client-ca-file, every client must present a
// certificate for client authentication that chains to that CA (reloaded
// too). It returns nil, nil when no file is set: plain HTTP.
func clientTLS(certFile, keyFile, clientCAFile string, lg *slog.Logger) (*tls.Config, error) {
	srv, _, err := clientTLSConfigs(certFile, keyFile, clientCAFile, "", lg)
	return srv, err
}

// clientTLSConfigs returns clientTLS's server config and the config a node
// forwards SSE and long-polling requests to another node's -http with
// (hub.Config.ForwardTLS): it verifies the other node's certificate, for
// the name the client used, against the CA certificates in forwardCAFile,
// or the system's roots when that is empty; and, when clients need
// certificates, it presents this node's -cert-file as one (which must then
// allow client authentication and chain to -client-ca-file, as the ones
// `raftplane certs node` makes do). Both are nil when no file is set.
func clientTLSConfigs(certFile, keyFile, clientCAFile, forwardCAFile string, lg *slog.Logger) (server, forward *tls.Config, err error) {
	if err := checkClientTLSFiles(certFile, keyFile, clientCAFile, forwardCAFile); err != nil {
		return nil, nil, err
	}
	if certFile == "" {
		return nil, nil, nil
	}
	r, err := certs.NewReloader(certs.Files{Cert: certFile, Key: keyFile, CA: clientCAFile}, lg.With("tls", "http"))
	if err != nil {
		return nil, nil, fmt.Errorf("-cert-file/-key-file/-client-ca-file: %w", err)
	}
	server = r.ServerConfig()
	// HTTP/1.1 only: WebSockets upgrade an HTTP/1.1 connection (the
	// gorilla upgrader cannot serve RFC 8441 over HTTP/2), and browsers
	// would otherwise try them over an h2 connection they already hold.
	server.NextProtos = []string{"http/1.1"}

	forward = &tls.Config{MinVersion: tls.VersionTLS12}
	if forwardCAFile != "" {
		pem, err := os.ReadFile(forwardCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("-forward-ca-file: %w", err)
		}
		forward.RootCAs = x509.NewCertPool()
		if !forward.RootCAs.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("-forward-ca-file %s holds no PEM certificate", forwardCAFile)
		}
	}
	if clientCAFile != "" {
		forward.GetClientCertificate = r.ClientConfig().GetClientCertificate
	}
	return server, forward, nil
}

// checkClientTLSFiles checks which of the -http TLS files are set
// together, without reading them.
func checkClientTLSFiles(certFile, keyFile, clientCAFile, forwardCAFile string) error {
	if certFile == "" && keyFile == "" {
		if clientCAFile != "" || forwardCAFile != "" {
			return &OptionError{Option: "client-ca-file", Err: errors.New("-client-ca-file and -forward-ca-file need -cert-file and -key-file")}
		}
		return nil
	}
	if certFile == "" || keyFile == "" {
		return &OptionError{Option: "cert-file", Err: fmt.Errorf("-cert-file (%q) and -key-file (%q) go together", certFile, keyFile)}
	}
	return nil
}
