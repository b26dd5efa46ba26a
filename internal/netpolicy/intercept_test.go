package netpolicy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// recorder is a stand-in server that remembers what reached it.
type recorder struct {
	name string
	mu   sync.Mutex
	reqs []*http.Request
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, r.Clone(context.Background()))
	rc.mu.Unlock()
	io.WriteString(w, rc.name+" "+r.URL.Path)
}

func (rc *recorder) last(t *testing.T) *http.Request {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.reqs) == 0 {
		t.Fatalf("nothing reached %s", rc.name)
	}
	return rc.reqs[len(rc.reqs)-1]
}

// GitHub's cache hosts, as the sandbox sees them, are the agent: cache
// calls go to the platform with the job's token, the rest to GitHub, and
// only a client trusting the sandbox's own CA accepts the certificate.
func TestInterceptActionsCache(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	platform, github := &recorder{name: "platform"}, &recorder{name: "github"}
	ps := httptest.NewServer(platform)
	defer ps.Close()
	gs := httptest.NewTLSServer(github)
	defer gs.Close()
	// "GitHub" is the test's TLS server, whatever the host name.
	ghTransport := gs.Client().Transport.(*http.Transport).Clone()
	ghTransport.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, gs.Listener.Addr().String())
	}
	ghTransport.TLSClientConfig.ServerName = "example.com" // httptest's certificate
	m, err := NewManager(Config{Subnet4: netip.MustParsePrefix("10.219.0.0/16"), Upstream: []string{"127.0.0.1:53"}, GitHub: ghTransport})
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(ps.URL)
	for _, tc := range []struct {
		name     string
		allow    []string
		toGitHub bool
	}{
		{"allowed", []string{"*.actions.githubusercontent.com"}, true},
		{"not allowed", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := m.Prepare(t.Context(), Spec{ID: "icpt", Policy: Policy{Mode: ModeAllowList, Allow: tc.allow},
				Platform: Platform{HTTP: pu, HTTPPaths: []string{"/cache/"}, CacheToken: "nimbus-job-token"}, InterceptActionsCache: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c := client{t, s}
			host := InterceptedHosts[0]
			resp, err := c.query(c.ownResolver(), "udp", host, dns.TypeA)
			if err != nil || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != s.Gateway().String() {
				t.Fatalf("%s: %v %v, want the gateway", host, resp, err)
			}
			// The sandbox's files: the CA alone and the system bundle with it.
			var ca []byte
			for _, f := range s.Files("nimbus") {
				switch f.Path {
				case JobCAPath:
					ca = f.Data
				case systemBundle:
					if pemBlocks(f.Data) < 1 || !strings.Contains(string(f.Data), string(ca)) {
						t.Errorf("system bundle lacks the sandbox's CA")
					}
				}
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				t.Fatal("no CA in the sandbox's files")
			}
			do := func(method, path string, trusted bool) (string, int, error) {
				tlsConf := &tls.Config{ServerName: host, RootCAs: pool}
				if !trusted {
					tlsConf.RootCAs = x509.NewCertPool()
				}
				hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf,
					DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
						return s.Netns().DialContext(ctx, network, netip.AddrPortFrom(s.Gateway(), 443).String())
					}}}
				req, _ := http.NewRequest(method, "https://"+host+path, strings.NewReader("{}"))
				req.Header.Set("Authorization", "Bearer github-runtime-token")
				resp, err := hc.Do(req)
				if err != nil {
					return "", 0, err
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return string(b), resp.StatusCode, nil
			}
			if _, _, err := do("GET", "/", false); err == nil {
				t.Error("a client that does not trust the sandbox's CA accepted its certificate")
			}
			// v2 (Twirp): the platform, with the job's token.
			body, code, err := do("POST", twirpCachePrefix+"CreateCacheEntry", true)
			if err != nil || code != 200 || body != "platform "+twirpCachePrefix+"CreateCacheEntry" {
				t.Fatalf("twirp cache call: %d %q %v", code, body, err)
			}
			r := platform.last(t)
			if r.Header.Get("Authorization") != "Bearer nimbus-job-token" || r.Host != host || r.Header.Get("X-Forwarded-Proto") != "https" {
				t.Errorf("at the platform: Authorization %q Host %q proto %q", r.Header.Get("Authorization"), r.Host, r.Header.Get("X-Forwarded-Proto"))
			}
			// The signed blob URLs the platform hands out.
			if body, _, _ := do("GET", "/actions-cache/blobs/down/x?sig=1", true); body != "platform /actions-cache/blobs/down/x" {
				t.Errorf("blob URL: %q", body)
			}
			// v1: GitHub's base path of its own, then _apis/artifactcache.
			if body, _, _ := do("GET", "/AbCd1234/_apis/artifactcache/cache?keys=k", true); body != "platform /actions-cache/_apis/artifactcache/cache" {
				t.Errorf("v1 call: %q", body)
			}
			if a := platform.last(t).Header.Get("Authorization"); a != "Bearer nimbus-job-token" {
				t.Errorf("v1 call's token at the platform: %q", a)
			}
			// Anything else goes to GitHub, when the policy allows the host.
			body, code, err = do("POST", "/twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact", true)
			if tc.toGitHub {
				if err != nil || code != 200 || !strings.HasPrefix(body, "github ") {
					t.Errorf("other call: %d %q %v, want it at GitHub", code, body, err)
				} else if a := github.last(t).Header.Get("Authorization"); a != "Bearer github-runtime-token" {
					t.Errorf("at GitHub: Authorization %q, want the runner's own", a)
				}
			} else if err != nil || code != http.StatusForbidden {
				t.Errorf("other call, host not allowed: %d %q %v, want 403", code, body, err)
			}
		})
	}
}

// The sandbox's CA can only vouch for GitHub's cache hosts.
func TestInterceptCAIsNameConstrained(t *testing.T) {
	pu, _ := url.Parse("http://127.0.0.1:1")
	ic, err := newIntercept(Platform{HTTP: pu, CacheToken: "x"}, http.DefaultTransport, func(string) bool { return false }, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(ic.leaf.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	if !ca.PermittedDNSDomainsCritical || len(ca.PermittedDNSDomains) != len(InterceptedHosts) || !ca.MaxPathLenZero {
		t.Errorf("CA constraints: %v %v %v", ca.PermittedDNSDomainsCritical, ca.PermittedDNSDomains, ca.MaxPathLenZero)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
