package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// handshake runs a real TLS handshake over loopback TCP and returns the
// errors of both sides and the identity the server saw.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error, seen Identity) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		err error
		id  Identity
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		// TLS 1.3 clients finish before the server has checked the client
		// certificate; reading makes the client learn the outcome.
		id, err := PeerIdentity(tc.ConnectionState())
		tc.Write([]byte("x"))
		done <- result{err: err, id: id}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, client)
	clientErr = tc.Handshake()
	if clientErr == nil {
		tc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, clientErr = tc.Read(make([]byte, 1))
	}
	c.Close()
	r := <-done
	return r.err, clientErr, r.id
}

func mustCA(t *testing.T, opts ...CAOption) *CA {
	t.Helper()
	ca, err := NewCA("test CA", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustIssue(t *testing.T, ca *CA, id Identity, o IssueOptions) tls.Certificate {
	t.Helper()
	c, err := ca.Issue(id, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMutualTLS(t *testing.T) {
	ca := mustCA(t)
	other := mustCA(t)
	agent := AgentIdentity("acme", "agent-1")
	alice := UserIdentity("acme", "alice")
	agentCert := mustIssue(t, ca, agent, IssueOptions{})
	aliceCert := mustIssue(t, ca, alice, IssueOptions{})
	past := time.Now().Add(-48 * time.Hour)

	tests := []struct {
		name       string
		serverCert tls.Certificate
		clientCert tls.Certificate
		clientCA   *x509.CertPool
		wantServer Identity
		accept     func(Identity) error
		wantErr    string // substring of either side's error; "" for success
	}{
		{name: "ok", serverCert: agentCert, clientCert: aliceCert, clientCA: ca.Pool(), wantServer: agent},
		{name: "client cert from another CA", serverCert: agentCert, clientCert: mustIssue(t, other, alice, IssueOptions{}), clientCA: ca.Pool(), wantServer: agent, wantErr: "certificate"},
		{name: "server cert from another CA", serverCert: mustIssue(t, other, agent, IssueOptions{}), clientCert: aliceCert, clientCA: ca.Pool(), wantServer: agent, wantErr: "unknown authority"},
		{name: "expired client cert", serverCert: agentCert, clientCert: mustIssue(t, ca, alice, IssueOptions{NotBefore: past, TTL: time.Hour}), clientCA: ca.Pool(), wantServer: agent, wantErr: "expired"},
		{name: "expired server cert", serverCert: mustIssue(t, ca, agent, IssueOptions{NotBefore: past, TTL: time.Hour}), clientCert: aliceCert, clientCA: ca.Pool(), wantServer: agent, wantErr: "expired"},
		{name: "wrong server identity", serverCert: mustIssue(t, ca, AgentIdentity("acme", "agent-2"), IssueOptions{}), clientCert: aliceCert, clientCA: ca.Pool(), wantServer: agent, wantErr: "want spiffe://nimbus/org/acme/agent/agent-1"},
		{name: "identity refused by server", serverCert: agentCert, clientCert: aliceCert, clientCA: ca.Pool(), wantServer: agent,
			accept:  func(id Identity) error { return errors.New("only agents") },
			wantErr: "only agents"},
		{name: "no client cert", serverCert: agentCert, clientCert: tls.Certificate{}, clientCA: ca.Pool(), wantServer: agent, wantErr: "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := ServerConfig(ca.Pool(), tt.serverCert, tt.accept)
			cc := ClientConfig(tt.clientCA, tt.clientCert, tt.wantServer)
			if tt.clientCert.Certificate == nil {
				cc.Certificates = nil
			}
			serr, cerr, seen := handshake(t, sc, cc)
			if tt.wantErr == "" {
				if serr != nil || cerr != nil {
					t.Fatalf("handshake: server %v, client %v", serr, cerr)
				}
				if diff := cmp.Diff(alice, seen); diff != "" {
					t.Errorf("peer identity (-want +got):\n%s", diff)
				}
				return
			}
			if serr == nil && cerr == nil {
				t.Fatalf("handshake succeeded, want error containing %q", tt.wantErr)
			}
			msg := ""
			if serr != nil {
				msg += "server: " + serr.Error() + "; "
			}
			if cerr != nil {
				msg += "client: " + cerr.Error()
			}
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("errors %q do not mention %q", msg, tt.wantErr)
			}
		})
	}
}

func TestTLS13Only(t *testing.T) {
	ca := mustCA(t)
	sc := ServerConfig(ca.Pool(), mustIssue(t, ca, AgentIdentity("acme", "a"), IssueOptions{}), nil)
	cc := ClientConfig(ca.Pool(), mustIssue(t, ca, UserIdentity("acme", "u"), IssueOptions{}), AgentIdentity("acme", "a"))
	cc.MinVersion, cc.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if serr, cerr, _ := handshake(t, sc, cc); serr == nil && cerr == nil {
		t.Fatal("TLS 1.2 handshake succeeded")
	}
}

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := LoadOrCreateCA(dir, "nimbus")
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateCA(dir, "nimbus")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Certificate().Equal(ca.Certificate()) {
		t.Fatal("reloaded CA has a different certificate")
	}
	st, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
	if err := ca.Save(dir); err == nil {
		t.Error("Save over an existing key succeeded")
	}
	// A certificate issued by the reloaded CA verifies against the original.
	cert := mustIssue(t, again, UserIdentity("acme", "bob"), IssueOptions{})
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
}

func TestSignCSR(t *testing.T) {
	ca := mustCA(t)
	key, csrPEM, err := NewCSR()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	// The requester asks for nothing; the identity comes from the caller.
	certPEM, err := ca.SignCSR(csr, UserIdentity("acme", "carol"), IssueOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := KeyPair(certPEM, key)
	if err != nil {
		t.Fatal(err)
	}
	id, err := IdentityFromCert(pair.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(UserIdentity("acme", "carol"), id); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
	if got := pair.Leaf.NotAfter.Sub(pair.Leaf.NotBefore); got != time.Hour {
		t.Errorf("validity %v, want 1h", got)
	}
	otherKey, _, _ := NewCSR()
	if _, err := KeyPair(certPEM, otherKey); err == nil {
		t.Error("KeyPair accepted a certificate with another key")
	}
	if _, err := ParseCSR([]byte("junk")); err == nil {
		t.Error("ParseCSR accepted junk")
	}
}

func TestIdentity(t *testing.T) {
	tests := []struct {
		in      string
		want    Identity
		wantErr bool
	}{
		{in: "spiffe://nimbus/org/acme/user/alice", want: UserIdentity("acme", "alice")},
		{in: "spiffe://nimbus/org/acme/agent/host-1.rack_2", want: AgentIdentity("acme", "host-1.rack_2")},
		{in: "spiffe://nimbus/org/acme/server/cp", want: Identity{Org: "acme", Kind: KindServer, Name: "cp"}},
		{in: "spiffe://other/org/acme/user/alice", wantErr: true},
		{in: "spiffe://nimbus/org/acme/user/..", wantErr: true},
		{in: "spiffe://nimbus/org/../user/alice", wantErr: true},
		{in: "spiffe://nimbus/org/acme/user/a/b", wantErr: true},
		{in: "spiffe://nimbus/org/acme/root/alice", wantErr: true},
		{in: "spiffe://nimbus/org/acme/user/", wantErr: true},
		{in: "spiffe://nimbus/org/acme/user/al%2Fice", wantErr: true},
		{in: "https://nimbus/org/acme/user/alice", wantErr: true},
		{in: "spiffe://nimbus/org/acme/user/alice?x=1", wantErr: true},
		{in: "spiffe://nimbus/org/acme/user/" + strings.Repeat("a", 65), wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseIdentity(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseIdentity(%q) error %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseIdentity(%q) (-want +got):\n%s", tt.in, diff)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("round trip %q -> %q", tt.in, got.String())
		}
	}
	ca := mustCA(t)
	if _, err := ca.Issue(UserIdentity("acme", "../x"), IssueOptions{}); err == nil {
		t.Error("Issue accepted a bad identity")
	}
}

func TestIdentityFromCertRejectsTwo(t *testing.T) {
	ca := mustCA(t)
	c := mustIssue(t, ca, UserIdentity("acme", "a"), IssueOptions{})
	leaf := *c.Leaf
	u, _ := url.Parse("spiffe://nimbus/org/acme/user/b")
	leaf.URIs = append(leaf.URIs, u)
	if _, err := IdentityFromCert(&leaf); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("two identities: err %v, want ErrNoIdentity", err)
	}
}

func FuzzParseIdentity(f *testing.F) {
	f.Add("spiffe://nimbus/org/acme/user/alice")
	f.Add("spiffe://nimbus/org/a/agent/b/../c")
	f.Add("spiffe://nimbus/org/%2e%2e/user/x")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIdentity(s)
		if err != nil {
			return
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("parsed identity %+v does not validate: %v", id, err)
		}
		for _, p := range []string{id.Org, id.Name} {
			if p == "." || p == ".." || strings.ContainsAny(p, "/\x00") {
				t.Fatalf("unsafe path component %q from %q", p, s)
			}
		}
		again, err := ParseIdentity(id.String())
		if err != nil || again != id {
			t.Fatalf("round trip of %q: %+v, %v", s, again, err)
		}
	})
}
