// Package dockertest starts, for tests, a Docker Engine of their own: a
// real dockerd (Debian's docker.io) with its data, state, pid file and
// socket in a directory of the test's, no bridge and no iptables rules
// (so it touches nothing of the host's network), and builds small images
// locally (no registry can be reached): busybox-static imported as a
// root filesystem.
package dockertest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Daemon is a running dockerd of a test.
type Daemon struct {
	Socket string
	Dir    string
	cmd    *exec.Cmd
}

// BusyboxImage is the image Busybox builds.
const BusyboxImage = "nimbus-test/busybox:1"

// Start starts a dockerd, or skips the test (fails it under CI=true) when
// dockerd or root is missing. It stops with the test.
func Start(t testing.TB) *Daemon {
	t.Helper()
	missing := func(msg string) {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: " + msg)
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		missing("dockerd needs root")
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		missing("dockerd not found (apt-get install docker.io)")
	}
	// Not under /tmp's 0700 test dirs: containers' uids must traverse.
	dir, err := os.MkdirTemp("/var/tmp", "nimbus-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o711)
	d := &Daemon{Socket: filepath.Join(dir, "docker.sock"), Dir: dir}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(dockerd,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "--host", "unix://"+d.Socket,
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false", "--ip-masq=false",
		"--containerd-namespace", "nimbus-test-"+filepath.Base(dir), "--containerd-plugins-namespace", "nimbus-test-plugins-"+filepath.Base(dir),
		"--log-level", "warn")
	// Its own output file and process group: it must not hold the test's
	// pipes, and a Ctrl-C of the test must not reach it first.
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := d.ping(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Fatalf("dockerd did not answer in time:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return d
}

func (d *Daemon) ping() error {
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", d.Socket)
	}}, Timeout: 2 * time.Second}
	resp, err := c.Get("http://docker/_ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("ping: %d", resp.StatusCode)
	}
	return nil
}

func (d *Daemon) stop(t testing.TB) {
	// Every container first, so that nothing outlives the daemon.
	if out, err := d.Docker(context.Background(), "ps", "-aq"); err == nil && strings.TrimSpace(out) != "" {
		d.Docker(context.Background(), append([]string{"rm", "-f"}, strings.Fields(out)...)...)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	// Overlay mounts of containers and the daemon's own.
	exec.Command("sh", "-c", "grep ' "+d.Dir+"' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l").Run()
	if err := os.RemoveAll(d.Dir); err != nil {
		t.Logf("remove dockerd's directory: %v", err)
	}
}

// Docker runs the docker client against the daemon.
func (d *Daemon) Docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"--host", "unix://" + d.Socket}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Busybox imports BusyboxImage: busybox-static and its applets, an
// /etc/passwd, nothing else.
func (d *Daemon) Busybox(t testing.TB) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("busybox not found (apt-get install busybox-static)")
		}
		t.Skip("busybox not found (apt-get install busybox-static)")
	}
	root := t.TempDir()
	for _, dir := range []string{"bin", "etc", "tmp", "root"} {
		os.MkdirAll(filepath.Join(root, dir), 0o755)
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755)
	for _, applet := range []string{"sh", "ls", "cat", "echo", "sleep", "id", "wget", "nc", "mkdir", "rm", "env", "true", "false",
		"ps", "grep", "hostname", "ip", "head", "tail", "touch", "dd", "kill", "setsid", "nohup", "tr", "wc", "mount", "test"} {
		os.Symlink("busybox", filepath.Join(root, "bin", applet))
	}
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\n"), 0o644)
	cmd := exec.Command("sh", "-c", "tar -C "+root+" -c . | docker --host unix://"+d.Socket+" import - "+BusyboxImage)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("import busybox: %v\n%s", err, out)
	}
	return BusyboxImage
}

// BuildStatic builds a Go main package statically (CGO_ENABLED=0) into a
// directory the test removes, traversable by other uids, and returns the
// binary's path.
func BuildStatic(t testing.TB, pkg string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "nimbus-static-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}
