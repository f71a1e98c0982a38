package vss

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/vss-dev/vss/client/go/vsspb"
)

// pair is a PEM certificate and key.
type pair struct{ cert, key []byte }

func issue(t *testing.T, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, isCA bool) (pair, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	return pair{
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, cert, key
}

// A client port with TLS that requires client certificates: the client
// checks the server against the CA it is given and presents its own
// certificate; without one it is refused.
func TestTLSWithAClientCertificate(t *testing.T) {
	caPair, ca, caKey := issue(t, "test CA", nil, nil, true)
	server, _, _ := issue(t, "vss-0", ca, caKey, false)
	client, _, _ := issue(t, "client", ca, caKey, false)
	serverCert, err := tls.X509KeyPair(server.cert, server.key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{addr: l.Addr().String(), id: "a"}
	f.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientCAs:    roots,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	})))
	vsspb.RegisterVssServer(f.srv, f)
	go func() { _ = f.srv.Serve(l) }()
	defer f.srv.Stop()

	c := newClient(t, WithEndpoints(f.addr), WithTLS(caPair.cert), WithClientCertificate(client.cert, client.key))
	g, err := c.Acquire(context.Background(), 0, AcquireOptions{Tokens: 2})
	c.Close()
	if err != nil || g.Granted != 2 {
		t.Fatalf("over mTLS: grant %v, err %v", g, err)
	}

	anonymous := newClient(t, WithEndpoints(f.addr), WithTLS(caPair.cert), WithTimeout(500*time.Millisecond))
	_, err = anonymous.Acquire(context.Background(), 0, AcquireOptions{})
	anonymous.Close()
	var e *Error
	if !errors.As(err, &e) || !e.Unreachable() {
		t.Fatalf("without a client certificate: %v", err)
	}

	otherCA, _, _ := issue(t, "another CA", nil, nil, true)
	wrong := newClient(t, WithEndpoints(f.addr), WithTLS(otherCA.cert), WithClientCertificate(client.cert, client.key),
		WithTimeout(500*time.Millisecond))
	_, err = wrong.Acquire(context.Background(), 0, AcquireOptions{})
	wrong.Close()
	if !errors.As(err, &e) || !e.Unreachable() {
		t.Fatalf("a server certificate of another CA was accepted: %v", err)
	}
}
