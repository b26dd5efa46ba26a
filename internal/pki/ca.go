package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names of a CA saved in a directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// DefaultLeafTTL is how long an issued certificate is valid when
// IssueOptions.TTL is zero.
const DefaultLeafTTL = 24 * time.Hour

// clockSkew is how far before now a certificate becomes valid, so a peer
// whose clock is slightly behind still accepts it.
const clockSkew = 5 * time.Minute

// CA issues leaf certificates. It is safe for concurrent use.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	now  func() time.Time
}

// CAOption configures NewCA, LoadCA and LoadOrCreateCA.
type CAOption func(*CA)

// WithClock makes the CA read the time from now (tests).
func WithClock(now func() time.Time) CAOption { return func(ca *CA) { ca.now = now } }

// NewCA creates a CA in memory with a fresh key and a self-signed
// certificate valid for ten years.
func NewCA(commonName string, opts ...CAOption) (*CA, error) {
	ca := &CA{now: time.Now}
	for _, o := range opts {
		o(ca)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Nimbus"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	ca.cert, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	ca.key = key
	return ca, nil
}

// LoadCA reads a CA saved by Save from dir.
func LoadCA(dir string, opts ...CAOption) (*CA, error) {
	ca := &CA{now: time.Now}
	for _, o := range opts {
		o(ca)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA from %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("load CA from %s: key is %T, want ECDSA", dir, pair.PrivateKey)
	}
	if !pair.Leaf.IsCA {
		return nil, fmt.Errorf("load CA from %s: certificate is not a CA", dir)
	}
	ca.cert, ca.key = pair.Leaf, key
	return ca, nil
}

// LoadOrCreateCA loads the CA in dir, creating and saving a new one when dir
// holds none.
func LoadOrCreateCA(dir, commonName string, opts ...CAOption) (*CA, error) {
	ca, err := LoadCA(dir, opts...)
	if err == nil {
		return ca, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ca, err = NewCA(commonName, opts...)
	if err != nil {
		return nil, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, err
	}
	return ca, nil
}

// Save writes the CA's certificate and key (mode 0600) to dir. It refuses to
// overwrite an existing key.
func (ca *CA) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	keyFile, err := os.OpenFile(filepath.Join(dir, CAKeyFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	if err := pem.Encode(keyFile, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}); err != nil {
		keyFile.Close()
		return fmt.Errorf("save CA key: %w", err)
	}
	if err := keyFile.Close(); err != nil {
		return fmt.Errorf("save CA key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, CACertFile), ca.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("save CA certificate: %w", err)
	}
	return nil
}

// Certificate returns the CA's own certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate in PEM form, for distribution to peers.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// Pool returns a pool trusting only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// IssueOptions describes a leaf certificate.
type IssueOptions struct {
	// TTL is how long the certificate is valid; DefaultLeafTTL when zero.
	TTL time.Duration
	// NotBefore overrides the start of validity (default: now minus a few
	// minutes of clock skew). With TTL it can describe an expired
	// certificate, which tests use.
	NotBefore time.Time
	// DNSNames and IPAddresses are added as SANs, for peers that verify a
	// host name (the control plane's HTTPS endpoint).
	DNSNames    []string
	IPAddresses []net.IP
}

// Issue creates a new P-256 key and a certificate for id, usable as both a
// TLS client and server certificate.
func (ca *CA) Issue(id Identity, opts IssueOptions) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue %s: %w", id, err)
	}
	der, err := ca.sign(id, &key.PublicKey, opts)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue %s: %w", id, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// SignCSR issues a certificate for id over the public key of csr, whose
// signature must be valid. Everything else in the CSR (its subject, its
// SANs) is ignored: the identity comes from the caller, who authenticated
// the requester. It returns the certificate in PEM form.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, id Identity, opts IssueOptions) ([]byte, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("sign CSR for %s: %w", id, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("sign CSR for %s: key must be ECDSA P-256", id)
	}
	der, err := ca.sign(id, pub, opts)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func (ca *CA) sign(id Identity, pub *ecdsa.PublicKey, opts IssueOptions) ([]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	ttl := opts.TTL
	if ttl == 0 {
		ttl = DefaultLeafTTL
	}
	if ttl < 0 {
		return nil, fmt.Errorf("issue %s: negative TTL", id)
	}
	notBefore := opts.NotBefore
	if notBefore.IsZero() {
		notBefore = ca.now().Add(-clockSkew)
	}
	notAfter := notBefore.Add(ttl)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: id.Name, Organization: []string{id.Org}},
		NotBefore:      notBefore,
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs:           nil,
		DNSNames:       opts.DNSNames,
		IPAddresses:    opts.IPAddresses,
		AuthorityKeyId: ca.cert.SubjectKeyId,
		SubjectKeyId:   keyID(pub),
	}
	tmpl.URIs = append(tmpl.URIs, id.URI())
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", id, err)
	}
	return der, nil
}

// NewCSR creates a key and a certificate signing request for it, to send to
// the CA holder. The request carries no identity: the CA assigns it.
func NewCSR() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR parses a PEM certificate signing request and checks its signature.
func ParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("parse CSR: no PEM CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("parse CSR: %w", err)
	}
	return csr, nil
}

// KeyPair combines a PEM certificate (chain) with its private key.
func KeyPair(certPEM []byte, key crypto.Signer) (tls.Certificate, error) {
	var cert tls.Certificate
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			cert.Certificate = append(cert.Certificate, block.Bytes)
		}
	}
	if len(cert.Certificate) == 0 {
		return tls.Certificate{}, errors.New("key pair: no certificate in PEM")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key pair: %w", err)
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return tls.Certificate{}, errors.New("key pair: certificate does not match the key")
	}
	cert.PrivateKey, cert.Leaf = key, leaf
	return cert, nil
}

// PoolFromPEM returns a pool holding every certificate in pemCerts.
func PoolFromPEM(pemCerts []byte) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemCerts) {
		return nil, errors.New("no certificate in CA PEM")
	}
	return p, nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return serial, nil
}

func keyID(pub *ecdsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(der)
	return sum[:20]
}
