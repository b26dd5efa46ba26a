package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/registry/registrytest"
)

// dockerd is a Docker daemon of the test's own: its data, exec root, pid
// file and socket under a temporary directory, no iptables, no bridge,
// the registry under test as its registry-mirrors entry. Never the
// host's daemon or socket.
type dockerd struct {
	sock, config string
	cmd          *exec.Cmd
	done         chan struct{}
	cli          string
}

func startDockerd(t *testing.T, mirrorHost string) *dockerd {
	t.Helper()
	bin, err := exec.LookPath("dockerd")
	cli, err2 := exec.LookPath("docker")
	if err != nil || err2 != nil || os.Geteuid() != 0 {
		msg := "dockerd, docker and root needed (apt-get install docker.io)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Short paths: a unix socket path has a length limit.
	dir, err := os.MkdirTemp("", "nd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerd{sock: filepath.Join(dir, "d.sock"), config: filepath.Join(dir, "cli"), done: make(chan struct{}), cli: cli}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(bin,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", "unix://"+d.sock,
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
		"--registry-mirror", "http://"+mirrorHost, "--insecure-registry", mirrorHost)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
		os.RemoveAll(dir)
	})
	waitFor(t, "dockerd to answer", func() bool {
		select {
		case <-d.done:
			log, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Fatalf("dockerd exited:\n%s", log)
		default:
		}
		_, err := d.run("version")
		return err == nil
	})
	return d
}

// login stores the credential the way `docker login` would for Docker
// Hub: a daemon sends Docker Hub's credential to its mirrors. (docker
// login itself would check it against Docker Hub, which the test cannot
// reach.)
func (d *dockerd) login(t *testing.T, token string) {
	t.Helper()
	os.MkdirAll(d.config, 0o700)
	cfg := map[string]any{"auths": map[string]any{"https://index.docker.io/v1/": map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte("nimbus:" + token))}}}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(d.config, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (d *dockerd) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.cli, append([]string{"--config", d.config, "-H", "unix://" + d.sock}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + d.config}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %v: %w: %s", args, err, out)
	}
	return string(out), nil
}

// A real Docker daemon with the registry as its registry-mirrors entry
// pulls a Docker Hub name through it: first from the upstream, then (its
// copy removed) from the cache without the upstream sending a blob, then
// with the upstream gone and the tag past its TTL (served stale).
func TestDockerdRegistryMirror(t *testing.T) {
	e := newEnv(t)
	d := startDockerd(t, e.host)
	d.login(t, "acme-viewer")
	img := registrytest.RandomImage(t, 64<<10, 2)
	e.pushUpstream("library/app:v1", img)
	want := registrytest.Digest(t, img)

	pull := func() {
		t.Helper()
		out, err := d.run("pull", "app:v1")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, want) {
			t.Fatalf("pulled another image:\n%s", out)
		}
		if _, err := d.run("rmi", "app:v1"); err != nil {
			t.Fatal(err)
		}
	}
	pull()
	if n := e.front.BlobGets(); n != 3 {
		t.Errorf("first pull: %d upstream blob GETs, want 3", n)
	}
	e.front.Reset()
	pull()
	if n := e.front.BlobGets(); n != 0 {
		t.Errorf("second pull: %d upstream blob GETs, want 0", n)
	}
	e.front.Close()
	e.clock.Advance(2 * time.Minute)
	pull()
	resp, _ := e.do(http.MethodHead, "/v2/library/app/manifests/v1", "acme-viewer", nil)
	if resp.Header.Get("X-Nimbus-Cache") != cacheStale {
		t.Errorf("with the upstream gone: %q", resp.Header.Get("X-Nimbus-Cache"))
	}
}
