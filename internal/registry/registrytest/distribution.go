// Package registrytest runs real registries for the registry's tests and
// benchmark: Debian's docker-registry (distribution 2.8) on a unix socket
// in a temporary directory, a front on 127.0.0.1:0 that counts what
// reaches it and can misbehave on purpose (corrupt, cut, stall or slow
// blobs, fail everything), images built and pushed with
// go-containerregistry, and skopeo as a client.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Distribution is a running docker-registry.
type Distribution struct {
	Socket string
	Dir    string
	cmd    *exec.Cmd
	done   chan struct{}
}

// DistributionOptions configure a docker-registry.
type DistributionOptions struct {
	// ProxyRemoteURL makes it a pull-through cache of that registry.
	ProxyRemoteURL string
	// Addr makes it listen on TCP (host:port) instead of a unix socket.
	Addr string
	// User and Password, when set, make it require Basic credentials
	// (htpasswd) behind the token-less challenge.
	User, Password string
}

// Binary returns docker-registry's path, or skips the test (fails under
// CI=true) when it is not installed.
func Binary(t testing.TB) string {
	t.Helper()
	return need(t, "docker-registry", "NIMBUS_TEST_DOCKER_REGISTRY")
}

func need(t testing.TB, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s not installed (scripts/test-deps.sh installs it)", name)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// StartDistribution starts docker-registry with its own configuration
// and storage under a temporary directory; it is stopped when the test
// ends.
func StartDistribution(t testing.TB, o DistributionOptions) *Distribution {
	t.Helper()
	d, err := LaunchDistribution(Binary(t), t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}

// LaunchDistribution starts docker-registry (bin) in dir. The caller
// stops it.
func LaunchDistribution(bin, dir string, o DistributionOptions) (*Distribution, error) {
	d := &Distribution{Dir: dir, Socket: filepath.Join(dir, "registry.sock"), done: make(chan struct{})}
	listen := "  net: unix\n  addr: " + d.Socket + "\n"
	if o.Addr != "" {
		listen = "  addr: " + o.Addr + "\n"
	}
	cfg := "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n" +
		"storage:\n  filesystem:\n    rootdirectory: " + filepath.Join(dir, "data") + "\n  delete:\n    enabled: true\n" +
		"http:\n  secret: nimbus-test-secret\n" + listen
	if o.User != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(o.Password), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		pw := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(pw, []byte(o.User+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, err
		}
		cfg += "auth:\n  htpasswd:\n    realm: nimbus-test\n    path: " + pw + "\n"
	}
	if o.ProxyRemoteURL != "" {
		cfg += "proxy:\n  remoteurl: " + o.ProxyRemoteURL + "\n"
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// Its own process group, its output to a file: it never holds the
	// test's pipes.
	d.cmd = exec.Command(bin, "serve", cfgPath)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	if err := d.waitReady(o.Addr); err != nil {
		d.Stop()
		log, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
		return nil, fmt.Errorf("docker-registry did not start: %v\n%s", err, log)
	}
	return d, nil
}

func (d *Distribution) waitReady(addr string) error {
	c := &http.Client{Transport: d.Transport(), Timeout: time.Second}
	ok := func(code int) bool { return code == http.StatusOK || code == http.StatusUnauthorized }
	target := "http://registry/v2/"
	if addr != "" {
		c.Transport = http.DefaultTransport
		target = "http://" + addr + "/v2/"
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return errors.New("exited")
		default:
		}
		resp, err := c.Get(target)
		if err == nil {
			resp.Body.Close()
			if ok(resp.StatusCode) {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	return errors.New("not ready after 20s")
}

// Transport dials the registry's unix socket whatever the URL's host.
func (d *Distribution) Transport() *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.Socket)
		},
		MaxIdleConnsPerHost: 64,
	}
}

// Stop kills the registry and waits for it.
func (d *Distribution) Stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Kill()
	<-d.done
}
