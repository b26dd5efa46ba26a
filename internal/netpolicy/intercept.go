package netpolicy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// The GitHub Actions runner hands every step the cache service's URLs
// from the job message GitHub sends it (ACTIONS_RESULTS_URL for the v2
// protocol, ACTIONS_CACHE_URL for v1), overwriting whatever the runner's
// environment says, so an unmodified workflow's actions/cache always talks
// to GitHub's hosts. A sandbox that intercepts them answers those hosts'
// names with its gateway, where the agent serves TLS with a certificate
// of a CA made for this sandbox alone (name-constrained to those hosts,
// its key never leaving the agent's memory) and trusted only inside it.
// The cache service's calls go to the platform's cache, with the job's
// Nimbus cache token in place of GitHub's; everything else the runner
// sends those hosts (its logs, artifacts) goes on to GitHub unchanged,
// when the sandbox's policy allows the host.

// InterceptedHosts are the hosts of GitHub's cache services.
var InterceptedHosts = []string{
	"results-receiver.actions.githubusercontent.com", // v2 (Twirp) and the runner's results
	"artifactcache.actions.githubusercontent.com",    // v1
}

// Where the sandbox finds its CA.
const (
	// JobCAPath holds the sandbox's CA certificate alone, for clients that
	// add certificates to their own bundles (Node.js: NODE_EXTRA_CA_CERTS).
	JobCAPath = "/etc/nimbus/job-ca.pem"
	// systemBundle is Debian's system certificate bundle, which the
	// sandbox sees with its CA appended.
	systemBundle = "/etc/ssl/certs/ca-certificates.crt"
)

// FilePaths are every file a sandbox network may give its sandbox
// (Sandbox.Files): a sandbox made before its network binds these.
var FilePaths = []string{"/etc/resolv.conf", "/etc/hosts", JobCAPath, systemBundle}

// Paths of the cache services that go to the platform.
const (
	twirpCachePrefix = "/twirp/github.actions.results.api.v1.CacheService/"
	blobsPrefix      = "/actions-cache/" // the platform's signed blob URLs, and v1
	v1Marker         = "/_apis/artifactcache/"
)

// intercept is one sandbox's interception of GitHub's cache services.
type intercept struct {
	caPEM  []byte
	bundle []byte // the system bundle with caPEM
	leaf   tls.Certificate
	srv    *http.Server
}

// newIntercept makes the sandbox's CA and certificate and the handler that
// routes its requests.
func newIntercept(p Platform, upstream http.RoundTripper, allowHost func(string) bool, log *slog.Logger) (*intercept, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:                randomSerial(),
		Subject:                     pkix.Name{CommonName: "Nimbus job CA (this sandbox only)"},
		NotBefore:                   now.Add(-time.Minute),
		NotAfter:                    now.Add(7 * 24 * time.Hour),
		IsCA:                        true,
		BasicConstraintsValid:       true,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         InterceptedHosts,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("sandbox CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: InterceptedHosts[0]},
		DNSNames:     InterceptedHosts,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("sandbox certificate: %w", err)
	}
	ic := &intercept{
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		leaf:  tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey},
	}
	system, _ := os.ReadFile(systemBundle)
	ic.bundle = slices.Concat(system, []byte("\n"), ic.caPEM)

	toPlatform := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(p.HTTP)
			// Signed URLs the cache hands out point back here.
			r.Out.Host = r.In.Host
			r.Out.Header.Set("X-Forwarded-Proto", "https")
			r.Out.Header.Del("X-Forwarded-For")
			r.Out.Header.Del("Forwarded")
			if strings.HasPrefix(r.Out.URL.Path, twirpCachePrefix) || isV1(r.In.URL.Path) {
				// GitHub's runtime token means nothing to the platform.
				r.Out.Header.Set("Authorization", "Bearer "+p.CacheToken)
			}
			if rest, ok := v1Path(r.In.URL.Path); ok {
				r.Out.URL.Path = strings.TrimSuffix(p.HTTP.Path, "/") + blobsPrefix + strings.TrimPrefix(rest, "/")
				r.Out.URL.RawPath = ""
			}
		},
		Transport:     p.Transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("platform cache unreachable", "path", r.URL.Path, "err", err)
			writeError(w, http.StatusBadGateway, "the platform's cache is unreachable from this agent")
		},
	}
	toGitHub := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "https", Host: r.In.Host})
			r.Out.Host = r.In.Host
			r.Out.Header.Del("X-Forwarded-For")
			r.Out.Header.Del("Forwarded")
		},
		Transport:     upstream,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("GitHub unreachable through the sandbox's interception", "host", r.Host, "err", err)
			writeError(w, http.StatusBadGateway, "GitHub is unreachable from this agent")
		},
	}
	ic.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host := strings.ToLower(hostOnly(r.Host))
			switch {
			case !slices.Contains(InterceptedHosts, host):
				writeError(w, http.StatusMisdirectedRequest, "this address serves only GitHub's cache services")
			case strings.Contains(r.URL.Path, ".."):
				writeError(w, http.StatusBadRequest, "bad path")
			case p.HTTP != nil && (strings.HasPrefix(r.URL.Path, twirpCachePrefix) || strings.HasPrefix(r.URL.Path, blobsPrefix) || isV1(r.URL.Path)):
				toPlatform.ServeHTTP(w, r)
			case allowHost(host):
				toGitHub.ServeHTTP(w, r)
			default:
				writeError(w, http.StatusForbidden, "the job's egress policy does not allow "+host)
			}
		}),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{ic.leaf}},
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return ic, nil
}

// serve serves the interception on ln (the sandbox's gateway, port 443).
func (ic *intercept) serve(f *forwarders, ln net.Listener) {
	f.closers = append(f.closers, ic.srv)
	f.wg.Go(func() { _ = ic.srv.ServeTLS(ln, "", "") })
}

// files are the sandbox's certificate files: the CA alone, and the system
// bundle with it.
func (ic *intercept) files() []executor.File {
	return []executor.File{{Path: JobCAPath, Data: ic.caPEM}, {Path: systemBundle, Data: ic.bundle}}
}

// isV1 reports a v1 cache call: /<anything>/_apis/artifactcache/….
func isV1(p string) bool {
	_, ok := v1Path(p)
	return ok
}

// v1Path maps /<token>/_apis/artifactcache/rest (the v1 base URL carries a
// path of GitHub's own) to _apis/artifactcache/rest.
func v1Path(p string) (string, bool) {
	i := strings.Index(p, v1Marker)
	if i < 0 || strings.Count(p[:i], "/") > 1 {
		return "", false
	}
	return p[i+1:], true
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// pemBlocks counts the certificates of a bundle (tests).
func pemBlocks(b []byte) int { return bytes.Count(b, []byte("-----BEGIN CERTIFICATE-----")) }
