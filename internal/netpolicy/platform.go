package netpolicy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Platform is what a sandbox reaches at PlatformName: the control
// plane's endpoints that jobs use (the build caches), forwarded by the
// agent. A sandbox never reaches the control plane directly.
type Platform struct {
	// HTTP is the control plane's base URL (http or https). Empty: no
	// HTTP endpoint.
	HTTP *url.URL
	// HTTPPaths are the path prefixes forwarded (e.g. "/cache/"); any
	// other path is answered 404 by the agent itself, so a job cannot use
	// the forwarder to reach the control plane's API.
	HTTPPaths []string
	// Transport sends the forwarded requests (the agent's TLS settings).
	// Default http.DefaultTransport.
	Transport http.RoundTripper
	// GRPC is host:port of the build cache's gRPC API, forwarded as TCP
	// (it speaks plaintext HTTP/2). Empty: none.
	GRPC string
	// CacheToken is the job's cache token, which an interception of
	// GitHub's cache services sends in place of GitHub's.
	CacheToken string
}

// PlatformEnv are the in-sandbox endpoints, for a job's environment.
type PlatformEnv struct {
	// HTTP is the base URL of the forwarded HTTP endpoints, e.g.
	// "http://nimbus.internal" (no trailing slash).
	HTTP string
	// GRPC is the gRPC endpoint as Bazel takes it, e.g.
	// "grpc://nimbus.internal:9092"; empty when there is none.
	GRPC string
}

// forwarders are one sandbox's platform listeners.
type forwarders struct {
	closers []io.Closer
	wg      sync.WaitGroup
}

func (f *forwarders) close() {
	for _, c := range f.closers {
		_ = c.Close()
	}
	f.wg.Wait()
}

// startHTTP serves p's HTTP endpoints on ln for one sandbox (client).
func (f *forwarders) startHTTP(ln net.Listener, p Platform, client net.IP, log *slog.Logger) {
	target := p.HTTP
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// The cache builds signed URLs from the host and scheme the
			// client used: keep them the sandbox's.
			r.Out.Host = r.In.Host
			r.Out.Header.Set("X-Forwarded-Proto", "http")
			r.Out.Header.Del("X-Forwarded-For")
			r.Out.Header.Del("Forwarded")
		},
		Transport:     p.Transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("platform endpoint unreachable", "path", r.URL.Path, "err", err)
			writeError(w, http.StatusBadGateway, "the platform endpoint is unreachable from this agent")
		},
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !allowedPath(r.URL.Path, p.HTTPPaths) {
				writeError(w, http.StatusNotFound, "only the platform's cache endpoints are served here")
				return
			}
			proxy.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	f.closers = append(f.closers, srv)
	f.wg.Go(func() { _ = srv.Serve(ln) })
}

func allowedPath(p string, prefixes []string) bool {
	if strings.Contains(p, "..") {
		return false
	}
	for _, pre := range prefixes {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "platform_proxy", "message": msg}})
}

// startTCP forwards every connection on ln to target.
func (f *forwarders) startTCP(ln net.Listener, target string, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	f.closers = append(f.closers, closerFunc(func() error { cancel(); return ln.Close() }))
	f.wg.Go(func() {
		var conns sync.WaitGroup
		defer conns.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { pipe(ctx, c, target, log) })
		}
	})
}

// pipe copies between c and a new connection to target until both
// directions end or ctx is cancelled.
func pipe(ctx context.Context, c net.Conn, target string, log *slog.Logger) {
	defer c.Close()
	d := net.Dialer{Timeout: 10 * time.Second}
	up, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		log.Warn("platform endpoint unreachable", "target", target, "err", err)
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
	defer stop()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		closeWrite(up)
		close(done)
	}()
	_, _ = io.Copy(c, up)
	closeWrite(c)
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
