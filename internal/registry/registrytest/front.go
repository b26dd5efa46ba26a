package registrytest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Fault is how the front misbehaves on blob GETs.
type Fault int

const (
	// None passes everything through.
	None Fault = iota
	// Corrupt flips one byte in the middle of every blob.
	Corrupt
	// Cut sends half of every blob, then drops the connection.
	Cut
	// Stall sends half of every blob, then nothing until Release, then
	// the rest.
	Stall
	// Slow sends blobs 16 KiB at a time with a pause after each.
	Slow
	// Down answers every request 503.
	Down
	// Gate holds every blob response until Release, then passes it.
	Gate
)

// Front is an upstream registry as Nimbus sees it: a server on
// 127.0.0.1:0 in front of a Distribution that counts the requests and
// blob bytes that reach it and misbehaves when told.
type Front struct {
	URL  string
	Host string // host:port, for image references
	srv  *httptest.Server

	fault    atomic.Int32
	requests sync.Map // "METHOD kind" -> *atomic.Int64
	blobGets atomic.Int64
	bytes    atomic.Int64
	mu       sync.Mutex
	release  chan struct{}
	rewrites sync.Map // path -> path

	// The token protocol, when RequireTokens is on: tokens issued by the
	// front's /token (anonymously, or for user:pass) for one repository.
	tokensOn   atomic.Bool
	tokenUser  string
	tokenPass  string
	tokens     sync.Map // token -> repository
	tokenCount atomic.Int64
}

// RequireTokens makes the front a registry of the Docker token protocol,
// as Docker Hub and ghcr.io are: every /v2/ request needs a Bearer token
// for its repository from the front's /token endpoint, which hands them
// out anonymously (user "") or for user:pass only.
func (f *Front) RequireTokens(user, pass string) {
	f.tokenUser, f.tokenPass = user, pass
	f.tokensOn.Store(true)
}

// TokensIssued is how many tokens /token handed out.
func (f *Front) TokensIssued() int64 { return f.tokenCount.Load() }

// tokenGate answers the token endpoint and checks tokens; it reports
// whether the request may go on.
func (f *Front) tokenGate(w http.ResponseWriter, r *http.Request) bool {
	if !f.tokensOn.Load() {
		return true
	}
	if r.URL.Path == "/token" {
		if f.tokenUser != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != f.tokenUser || p != f.tokenPass {
				http.Error(w, `{"details":"incorrect username or password"}`, http.StatusUnauthorized)
				return false
			}
		}
		scope := r.URL.Query().Get("scope")
		repo := strings.TrimSuffix(strings.TrimPrefix(scope, "repository:"), ":pull")
		if r.URL.Query().Get("service") != "front.test" || repo == scope {
			http.Error(w, `{"details":"bad scope or service"}`, http.StatusBadRequest)
			return false
		}
		tok := fmt.Sprintf("tok-%d-%s", f.tokenCount.Add(1), strings.ReplaceAll(repo, "/", "."))
		f.tokens.Store(tok, repo)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token":%q,"expires_in":300}`, tok)
		return false
	}
	repo := strings.TrimPrefix(r.URL.Path, "/v2/")
	for _, sep := range []string{"/manifests/", "/blobs/", "/tags/"} {
		if i := strings.Index(repo, sep); i >= 0 {
			repo = repo[:i]
		}
	}
	got, ok := f.tokens.Load(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if ok && got == repo {
		r.Header.Del("Authorization")
		return true
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="front.test",scope="repository:%s:pull"`, f.URL, repo))
	http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
	return false
}

// Rewrite makes the front forward requests for path to another path: the
// upstream then answers with content other than what was asked for (a
// tampering proxy on the way).
func (f *Front) Rewrite(from, to string) { f.rewrites.Store(from, to) }

// StartFront starts a front for d, closed when the test ends.
func StartFront(t testing.TB, d *Distribution) *Front {
	f := NewFront(d)
	t.Cleanup(f.Close)
	return f
}

// NewFront starts a front for d; the caller closes it.
func NewFront(d *Distribution) *Front {
	f := &Front{release: make(chan struct{})}
	target, _ := url.Parse("http://registry")
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = d.Transport()
	proxy.FlushInterval = -1
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if to, ok := f.rewrites.Load(r.URL.Path); ok {
			r.URL.Path = to.(string)
		}
		kind := kindOf(r.URL.Path)
		f.count(r.Method + " " + kind)
		if !f.tokenGate(w, r) {
			return
		}
		if Fault(f.fault.Load()) == Down {
			http.Error(w, `{"errors":[{"code":"UNAVAILABLE","message":"down for the test"}]}`, http.StatusServiceUnavailable)
			return
		}
		if kind != "blob" || r.Method != http.MethodGet {
			proxy.ServeHTTP(w, r)
			return
		}
		f.blobGets.Add(1)
		proxy.ServeHTTP(&faultyWriter{ResponseWriter: w, f: f, fault: Fault(f.fault.Load())}, r)
	}))
	f.URL = f.srv.URL
	f.Host = strings.TrimPrefix(f.srv.URL, "http://")
	return f
}

func kindOf(p string) string {
	switch {
	case strings.Contains(p, "/blobs/uploads"):
		return "upload"
	case strings.Contains(p, "/blobs/"):
		return "blob"
	case strings.Contains(p, "/manifests/"):
		return "manifest"
	case strings.HasSuffix(p, "/tags/list"):
		return "tags"
	}
	return "other"
}

func (f *Front) count(k string) {
	v, _ := f.requests.LoadOrStore(k, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// SetFault changes how the front behaves from the next request on.
func (f *Front) SetFault(x Fault) {
	f.mu.Lock()
	f.release = make(chan struct{})
	f.mu.Unlock()
	f.fault.Store(int32(x))
}

// Release lets stalled or gated responses go on.
func (f *Front) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.release:
	default:
		close(f.release)
	}
}

func (f *Front) releaseCh() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.release
}

// Requests returns how many requests of "METHOD kind" (kind: manifest,
// blob, upload, tags, other) reached the front.
func (f *Front) Requests(k string) int64 {
	v, ok := f.requests.Load(k)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

// BlobGets is how many blob GETs reached the front.
func (f *Front) BlobGets() int64 { return f.blobGets.Load() }

// BlobBytes is how many blob bytes the front sent.
func (f *Front) BlobBytes() int64 { return f.bytes.Load() }

// Reset zeroes the counters.
func (f *Front) Reset() {
	f.requests.Range(func(k, _ any) bool { f.requests.Delete(k); return true })
	f.blobGets.Store(0)
	f.bytes.Store(0)
}

// Close stops the front: the upstream is unreachable from then on.
func (f *Front) Close() {
	f.Release()
	f.srv.CloseClientConnections()
	f.srv.Close()
}

// faultyWriter applies a fault to a blob response body on its way out.
type faultyWriter struct {
	http.ResponseWriter
	f      *Front
	fault  Fault
	status int
	length int64
	sent   int64
	paused bool
}

func (w *faultyWriter) WriteHeader(code int) {
	w.status = code
	if code == http.StatusOK {
		w.length = parseLength(w.Header().Get("Content-Length"))
		if w.fault == Gate {
			<-w.f.releaseCh()
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func parseLength(s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func (w *faultyWriter) Write(p []byte) (int, error) {
	if w.status != http.StatusOK || w.length <= 0 {
		return w.ResponseWriter.Write(p)
	}
	half := w.length / 2
	switch w.fault {
	case Corrupt:
		if w.sent <= half && half < w.sent+int64(len(p)) {
			p = bytes.Clone(p)
			p[half-w.sent] ^= 0xff
		}
	case Cut, Stall:
		if !w.paused && w.sent+int64(len(p)) > half {
			w.paused = true
			k := half - w.sent
			n, _ := w.ResponseWriter.Write(p[:k])
			w.sent += int64(n)
			w.f.bytes.Add(int64(n))
			if fl, ok := w.ResponseWriter.(http.Flusher); ok {
				fl.Flush()
			}
			if w.fault == Cut {
				panic(http.ErrAbortHandler)
			}
			<-w.f.releaseCh()
			m, err := w.ResponseWriter.Write(p[k:])
			w.sent += int64(m)
			w.f.bytes.Add(int64(m))
			return n + m, err
		}
	case Slow:
		written := 0
		for len(p) > 0 {
			k := min(len(p), 16<<10)
			n, err := w.ResponseWriter.Write(p[:k])
			written += n
			w.sent += int64(n)
			w.f.bytes.Add(int64(n))
			if err != nil {
				return written, err
			}
			if fl, ok := w.ResponseWriter.(http.Flusher); ok {
				fl.Flush()
			}
			time.Sleep(2 * time.Millisecond) // the upstream's slowness itself
			p = p[k:]
		}
		return written, nil
	}
	n, err := w.ResponseWriter.Write(p)
	w.sent += int64(n)
	w.f.bytes.Add(int64(n))
	return n, err
}

func (w *faultyWriter) Flush() {
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

var _ io.Writer = (*faultyWriter)(nil)
