package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
)

// CertHolder holds the certificate a TLS server presents and lets it be
// replaced while connections are being accepted, so a short-lived
// certificate can be renewed without a restart. Every replacement must
// carry the identity of the first: renewal never changes who the server
// is.
type CertHolder struct {
	id  Identity
	cur atomic.Pointer[tls.Certificate]
}

// NewCertHolder holds cert, whose leaf must carry an identity.
func NewCertHolder(cert tls.Certificate) (*CertHolder, error) {
	id, err := leafIdentity(&cert)
	if err != nil {
		return nil, err
	}
	h := &CertHolder{id: id}
	h.cur.Store(&cert)
	return h, nil
}

// Identity is the identity every certificate held carries.
func (h *CertHolder) Identity() Identity { return h.id }

// Leaf is the certificate presented now.
func (h *CertHolder) Leaf() *x509.Certificate { return h.cur.Load().Leaf }

// Set replaces the certificate for the handshakes that follow.
func (h *CertHolder) Set(cert tls.Certificate) error {
	id, err := leafIdentity(&cert)
	if err != nil {
		return err
	}
	if id != h.id {
		return fmt.Errorf("renewed certificate is for %s, not %s", id, h.id)
	}
	h.cur.Store(&cert)
	return nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (h *CertHolder) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.cur.Load(), nil
}

// leafIdentity parses cert's leaf (keeping it in cert.Leaf) and returns
// its identity.
func leafIdentity(cert *tls.Certificate) (Identity, error) {
	if len(cert.Certificate) == 0 {
		return Identity{}, errors.New("certificate: empty chain")
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return Identity{}, fmt.Errorf("certificate: %w", err)
		}
		cert.Leaf = leaf
	}
	return IdentityFromCert(cert.Leaf)
}

// ServerConfigFrom is ServerConfig presenting whatever h holds at each
// handshake.
func ServerConfigFrom(roots *x509.CertPool, h *CertHolder, accept func(Identity) error) *tls.Config {
	c := ServerConfig(roots, tls.Certificate{}, accept)
	c.Certificates = nil
	c.GetCertificate = h.GetCertificate
	return c
}
