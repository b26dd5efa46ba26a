package sessionapi

import (
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/pki"
)

// FuzzEndpointFrom: the proxy checks the control plane's answer.
func FuzzEndpointFrom(f *testing.F) {
	ca, _ := pki.NewCA("fuzz")
	key, csrPEM, _ := pki.NewCSR()
	csr, _ := pki.ParseCSR(csrPEM)
	cert, _ := ca.SignCSR(csr, pki.UserIdentity("acme", "alice"), pki.IssueOptions{})
	good, _ := json.Marshal(getServerResponse{SessionID: "s-1", AgentAddress: "10.0.0.1:1", AgentIdentity: "spiffe://nimbus/org/acme/agent/a", CACertPEM: string(ca.CertPEM()), ClientCertPEM: string(cert)})
	f.Add(string(good))
	f.Fuzz(func(t *testing.T, body string) {
		var resp getServerResponse
		if json.Unmarshal([]byte(body), &resp) != nil {
			return
		}
		ep, err := endpointFrom(resp, key)
		if err != nil {
			return
		}
		if ep.TLS == nil || ep.TLS.MinVersion != tls.VersionTLS13 || pki.ValidateName(ep.SessionID) != nil {
			t.Fatalf("accepted %+v", ep)
		}
	})
}

func FuzzReadToken(f *testing.F) {
	f.Add(`{"token":"abc"}`)
	f.Add("abc\n")
	f.Fuzz(func(t *testing.T, content string) {
		p := filepath.Join(t.TempDir(), "creds")
		os.WriteFile(p, []byte(content), 0o600)
		tok, err := ReadToken(p)
		if err == nil && (tok == "" || strings.ContainsAny(tok, " \r\n\t")) {
			t.Fatalf("token %q", tok)
		}
	})
}
