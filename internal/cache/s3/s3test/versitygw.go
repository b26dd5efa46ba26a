// Package s3test runs a real S3-compatible server for tests: versitygw
// (github.com/versity/versitygw) with a POSIX backend in a temporary
// directory, on a free loopback port, killed when the test ends.
package s3test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/s3"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

// Install is how to install the server the tests use.
const Install = "GOBIN=$(go env GOPATH)/bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0, then put it on PATH or set NIMBUS_TEST_VERSITYGW to its path"

// Credentials of the test server's root account.
const (
	AccessKey = "nimbus-test-access"
	SecretKey = "nimbus-test-secret-key"
)

// Server is a running versitygw.
type Server struct {
	t    testing.TB
	bin  string
	root string
	logf string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// binary finds versitygw: $NIMBUS_TEST_VERSITYGW, PATH, then GOPATH/bin.
func binary(t testing.TB) string {
	if p := os.Getenv("NIMBUS_TEST_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			testenv.Missing(t, "NIMBUS_TEST_VERSITYGW=%s: %v (install: %s)", p, err, Install)
		}
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(string(trimNL(out)), "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testenv.Missing(t, "versitygw not found (install: %s)", Install)
	return ""
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// Start starts a server on a free loopback port; it is killed at the end
// of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: binary(t), root: t.TempDir()}
	s.logf = filepath.Join(t.TempDir(), "versitygw.log")
	var err error
	for range 5 { // the port may be taken between choosing it and binding it
		s.addr, err = freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (s *Server) start() error {
	s.cmd = exec.Command(s.bin, "--port", s.addr, "--access", AccessKey, "--secret", SecretKey,
		"--keep-alive", "--quiet", "posix", s.root)
	log, err := os.OpenFile(s.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(log.Name())
			return fmt.Errorf("versitygw exited: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("versitygw did not listen on %s", s.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Stop kills the server (the data stays for Restart).
func (s *Server) Stop() { s.kill() }

// Restart starts the server again on the same port and data.
func (s *Server) Restart() {
	s.t.Helper()
	s.kill()
	if err := s.start(); err != nil {
		s.t.Fatalf("restart versitygw: %v", err)
	}
}

// Endpoint is the server's URL.
func (s *Server) Endpoint() string { return "http://" + s.addr }

// Config returns a client configuration for bucket (path style).
func (s *Server) Config(bucket string) s3.Config {
	return s3.Config{Endpoint: s.Endpoint(), Region: "us-east-1", Bucket: bucket, PathStyle: true, AccessKeyID: AccessKey, SecretAccessKey: SecretKey}
}

// Bucket creates bucket and returns a client for it.
func (s *Server) Bucket(t testing.TB, bucket string) *s3.Client {
	t.Helper()
	c, err := s3.NewClient(s.Config(bucket), s3.NewTransport(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CreateBucket(context.Background()); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	return c
}
