package cache_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/policy"
)

// Tokens of the test environment: org a has a CI token (read-write) and a
// developer token (read-only); org b has a CI token.
const (
	tokCIA  = "ci-token-a"
	tokDevA = "dev-token-a"
	tokCIB  = "ci-token-b"
	tokJobA = "job-token-a"
)

func testTokens() *access.Tokens {
	t := access.NewTokens()
	t.Add(tokCIA, auth.Principal{Kind: auth.KindUser, Org: "org-a", ID: "t1", Role: auth.RoleCI})
	t.Add(tokDevA, auth.Principal{Kind: auth.KindUser, Org: "org-a", ID: "t2", Role: auth.RoleDeveloper})
	t.Add(tokCIB, auth.Principal{Kind: auth.KindUser, Org: "org-b", ID: "t3", Role: auth.RoleCI})
	t.Add(tokJobA, auth.Principal{Kind: auth.KindJob, Org: "org-a", ID: "job1", Scopes: []string{string(access.Read), string(access.Write), string(access.WriteAC), "cache.ref="}})
	return t
}

// env is a running cache: gRPC and HTTP on loopback ports.
type env struct {
	svc      *cache.Service
	tokens   *access.Tokens
	grpcAddr string
	httpURL  string
}

func startEnv(t testing.TB, cfg cache.Config) *env {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	tokens := testTokens()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pol, err := policy.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := cache.New(cfg, tokens, policy.OrgAuthorizer{Engine: pol}, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := svc.NewGRPCServer()
	done := make(chan error, 1)
	go func() { done <- g.Serve(lis) }()
	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		hs.Close()
		g.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("grpc serve: %v", err)
		}
		if err := svc.Close(); err != nil {
			t.Errorf("close cache: %v", err)
		}
	})
	return &env{svc: svc, tokens: tokens, grpcAddr: lis.Addr().String(), httpURL: hs.URL}
}

// bearer is per-RPC credentials that send a bearer token over plaintext
// loopback connections.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

func (e *env) dial(t testing.TB, token string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	conn, err := grpc.NewClient(e.grpcAddr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func httpDo(t testing.TB, method, url, token string, body []byte) (*http.Response, []byte) {
	t.Helper()
	var r *http.Request
	var err error
	if body != nil {
		r, err = http.NewRequest(method, url, bytesReader(body))
	} else {
		r, err = http.NewRequest(method, url, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := readAll(resp.Body)
	return resp, b
}
