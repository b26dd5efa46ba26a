package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ServerConfig returns a TLS 1.3 server configuration presenting cert that
// requires a client certificate issued by a CA in roots and carrying a
// Nimbus identity. accept, when non-nil, may refuse an identity (for
// example, only users); the handshake fails with its error.
func ServerConfig(roots *x509.CertPool, cert tls.Certificate, accept func(Identity) error) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := PeerIdentity(cs)
			if err != nil {
				return err
			}
			if accept != nil {
				return accept(id)
			}
			return nil
		},
	}
}

// ClientConfig returns a TLS 1.3 client configuration presenting cert that
// accepts only a server certificate issued by a CA in roots whose identity
// is server. Host names are not checked: the identity is.
func ClientConfig(roots *x509.CertPool, cert tls.Certificate, server Identity) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// The standard verification checks a host name; ours checks the
		// chain and the identity in VerifyConnection instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyChain(roots, cs.PeerCertificates, x509.ExtKeyUsageServerAuth); err != nil {
				return err
			}
			id, err := IdentityFromCert(cs.PeerCertificates[0])
			if err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			if id != server {
				return fmt.Errorf("server is %s, want %s", id, server)
			}
			return nil
		},
	}
}

// PeerIdentity returns the identity of the verified peer certificate of a
// completed (or completing) handshake.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, errors.New("peer presented no certificate")
	}
	return IdentityFromCert(cs.PeerCertificates[0])
}

func verifyChain(roots *x509.CertPool, chain []*x509.Certificate, usage x509.ExtKeyUsage) error {
	if len(chain) == 0 {
		return errors.New("peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   time.Now(),
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return fmt.Errorf("verify peer certificate: %w", err)
	}
	return nil
}
