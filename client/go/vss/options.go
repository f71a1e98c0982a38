package vss

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"
)

// DefaultTimeout is the time one call may take on one instance, unless
// [WithTimeout] says otherwise (the Rust client's DEFAULT_CALL_TIMEOUT).
const DefaultTimeout = 2 * time.Second

// Option configures a [Client]; see [New].
type Option func(*settings) error

type settings struct {
	endpoints  []string
	timeout    time.Duration
	token      string
	caPEM      []byte
	certPEM    []byte
	keyPEM     []byte
	coalescing bool
}

// WithEndpoints adds instances of the cluster, as host:port. Give every
// instance: the client connects to all of them. Entries may also be
// comma-separated lists ("a:1,b:2").
func WithEndpoints(endpoints ...string) Option {
	return func(s *settings) error {
		for _, e := range endpoints {
			for _, one := range strings.Split(e, ",") {
				one = strings.TrimSpace(one)
				one = strings.TrimPrefix(one, "http://")
				if one == "" {
					continue
				}
				if strings.Contains(one, "://") {
					return fmt.Errorf("vss: endpoint %q: give host:port (TLS is set with WithTLS)", one)
				}
				s.endpoints = append(s.endpoints, one)
			}
		}
		return nil
	}
}

// WithTimeout sets the time one call may take on one instance before the
// next instance is tried (default [DefaultTimeout]). A publish may take
// the slot's own timeout (at most 60 s) on top. The context given to a
// call bounds the whole call, every attempt included.
func WithTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("vss: timeout must be above 0, got %v", d)
		}
		s.timeout = d
		return nil
	}
}

// WithToken sends `authorization: Bearer <token>` on every call, for
// instances started with --client-tokens (docs/security.md).
func WithToken(token string) Option {
	return func(s *settings) error {
		token = strings.TrimSpace(token)
		if token == "" {
			return errors.New("vss: token: empty")
		}
		for _, r := range token {
			if r > unicode.MaxASCII || !unicode.IsPrint(r) {
				return errors.New("vss: token: not printable ASCII")
			}
		}
		s.token = token
		return nil
	}
}

// WithTokenFile reads the token from a file (a mounted Secret), trimmed.
func WithTokenFile(path string) Option {
	return func(s *settings) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("vss: token file: %w", err)
		}
		return WithToken(string(b))(s)
	}
}

// WithTLS turns TLS on: the instances' certificates must be signed by one
// of the CA certificates in caPEM.
func WithTLS(caPEM []byte) Option {
	return func(s *settings) error {
		s.caPEM = caPEM
		return nil
	}
}

// WithClientCertificate presents this certificate chain and key (PEM) to
// instances that require client certificates. Needs [WithTLS].
func WithClientCertificate(certPEM, keyPEM []byte) Option {
	return func(s *settings) error {
		s.certPEM, s.keyPEM = certPEM, keyPEM
		return nil
	}
}

// WithTLSFiles is [WithTLS] and, when certFile and keyFile are not empty,
// [WithClientCertificate], from files.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(s *settings) error {
		ca, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("vss: TLS CA: %w", err)
		}
		s.caPEM = ca
		if certFile == "" && keyFile == "" {
			return nil
		}
		if certFile == "" || keyFile == "" {
			return errors.New("vss: client certificate: give both the certificate and the key file")
		}
		if s.certPEM, err = os.ReadFile(certFile); err != nil {
			return fmt.Errorf("vss: client certificate: %w", err)
		}
		if s.keyPEM, err = os.ReadFile(keyFile); err != nil {
			return fmt.Errorf("vss: client key: %w", err)
		}
		return nil
	}
}

// WithCoalescing says whether concurrent acquires share AcquireBatch calls
// (default true).
func WithCoalescing(on bool) Option {
	return func(s *settings) error {
		s.coalescing = on
		return nil
	}
}

// tlsConfig is the TLS configuration for the client port, or nil.
func (s *settings) tlsConfig() (*tls.Config, error) {
	if s.caPEM == nil {
		if s.certPEM != nil || s.keyPEM != nil {
			return nil, errors.New("vss: client certificate: needs the CA of the instances' certificates too (WithTLS)")
		}
		return nil, nil
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.caPEM) {
		return nil, errors.New("vss: TLS CA: no PEM certificate")
	}
	config := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if s.certPEM != nil || s.keyPEM != nil {
		pair, err := tls.X509KeyPair(s.certPEM, s.keyPEM)
		if err != nil {
			return nil, fmt.Errorf("vss: client certificate and key: %w", err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}

// bearer adds the token to every call.
type bearer struct{ value string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.value}, nil
}

// RequireTransportSecurity is false: like the Rust client, a token may be
// sent on a plaintext port (loopback, a sidecar); use TLS elsewhere.
func (bearer) RequireTransportSecurity() bool { return false }
