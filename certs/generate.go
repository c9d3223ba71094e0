package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// clockSkew backdates NotBefore so a certificate made on one machine is valid
// at once on a peer whose clock is a little behind.
const clockSkew = 5 * time.Minute

// maxNameLen is the longest DNS name (RFC 1035).
const maxNameLen = 253

// NewCA makes a self-signed ECDSA P-256 CA certificate and key, PEM encoded.
// The CA can sign leaf certificates only (path length 0): a node certificate
// cannot mint further members.
func NewCA(commonName string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if commonName == "" {
		return nil, nil, errors.New("certs: CA common name is empty")
	}
	if validFor <= 0 {
		return nil, nil, fmt.Errorf("certs: CA validity (%s) must be positive", validFor)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// NewNodeCert makes a certificate signed by the CA for one node, usable both
// as TLS server and TLS client (ExtKeyUsageServerAuth and ClientAuth), with
// the IPs and DNS names as SANs (the name is the CommonName and also a DNS
// SAN). Its validity ends with the CA's if that comes first: a certificate
// the CA no longer vouches for is of no use.
func NewNodeCert(caCertPEM, caKeyPEM []byte, name string, ips []net.IP, hosts []string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	for _, h := range hosts {
		if err := checkName(h); err != nil {
			return nil, nil, fmt.Errorf("host: %w", err)
		}
	}
	for _, ip := range ips {
		if ip.To16() == nil {
			return nil, nil, fmt.Errorf("certs: invalid IP %v", ip)
		}
	}
	if validFor <= 0 {
		return nil, nil, fmt.Errorf("certs: node certificate validity (%s) must be positive", validFor)
	}
	ca, err := parseCert(caCertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: CA certificate: %w", err)
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, errors.New("certs: the CA certificate is not a CA (no IsCA or no cert-sign key usage)")
	}
	caKey, err := parseKey(caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: CA key: %w", err)
	}
	if !publicKeysEqual(caKey.Public(), ca.PublicKey) {
		return nil, nil, errors.New("certs: the CA key does not belong to the CA certificate")
	}
	now := time.Now()
	if now.After(ca.NotAfter) {
		return nil, nil, fmt.Errorf("certs: the CA expired on %s", ca.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(validFor)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: node key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	dns := []string{name}
	for _, h := range hosts {
		if !slices.Contains(dns, h) {
			dns = append(dns, h)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		// ECDSA keys sign; they never encipher keys, so DigitalSignature
		// is the only key usage a TLS leaf needs.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           slices.Clone(ips),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: node certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// checkName accepts what can be a DNS name in a certificate and a file name
// (raftplane certs writes NAME.pem): letters, digits, '-', '_' and '.', not
// starting with '.' or '-'.
func checkName(name string) error {
	if name == "" {
		return errors.New("certs: name is empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("certs: name %.20q... is longer than %d bytes", name, maxNameLen)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("certs: name %q must not start with %q", name, name[0])
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("certs: name %q may hold only letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// newSerial returns a random 128-bit serial number (RFC 5280 allows 20
// octets; CAs use random serials so they cannot be predicted).
func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // never 0
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseCert returns the first certificate in PEM data.
func parseCert(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// parseKey reads a PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) private key, so a CA
// made by openssl or another tool works too.
func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key block")
		}
		switch b.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("unsupported key type %T", k)
			}
			return s, nil
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(b.Bytes)
		}
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
