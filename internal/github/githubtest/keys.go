package githubtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
)

var (
	sharedKeyOnce sync.Once
	sharedKey     *rsa.PrivateKey
	sharedKeyErr  error
)

// GenerateKey returns a fresh 2048-bit RSA key, like the private keys GitHub
// generates for Apps. Generating one takes a noticeable fraction of a second;
// see SharedKey.
func GenerateKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("generate rsa key: %v", err)
	}
	return k
}

// SharedKey returns one 2048-bit RSA key generated once per test binary,
// for tests that need a key but not a distinct one.
func SharedKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	sharedKeyOnce.Do(func() { sharedKey, sharedKeyErr = rsa.GenerateKey(rand.Reader, 2048) })
	if sharedKeyErr != nil {
		tb.Fatalf("generate rsa key: %v", sharedKeyErr)
	}
	return sharedKey
}

// PKCS1PEM encodes k as an "RSA PRIVATE KEY" PEM block, the form GitHub
// hands out for App keys.
func PKCS1PEM(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

// PKCS8PEM encodes k as a "PRIVATE KEY" PEM block.
func PKCS8PEM(tb testing.TB, k *rsa.PrivateKey) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatalf("marshal pkcs8: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
