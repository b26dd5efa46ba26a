package bwrap

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nimbus-build/nimbus/internal/executor"
)

func TestCheck(t *testing.T) {
	requireBwrap(t)
	root := traversableDir(t)
	tests := []struct {
		name string
		opts func() Options
		want string // "" for no error; else a substring of the error
	}{
		{
			name: "works",
			opts: func() Options { return Options{WorkRoot: filepath.Join(root, "ok"), UIDBase: testUIDBase} },
		},
		{
			name: "bubblewrap missing",
			opts: func() Options {
				return Options{WorkRoot: filepath.Join(root, "missing"), BwrapPath: "/nonexistent/bwrap"}
			},
			want: "bubblewrap not found at /nonexistent/bwrap: install it with `apt-get install bubblewrap`",
		},
		{
			name: "bubblewrap not executable",
			opts: func() Options {
				p := filepath.Join(root, "bwrap")
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				return Options{WorkRoot: filepath.Join(root, "noexec"), BwrapPath: p}
			},
			want: "is not an executable file",
		},
		{
			name: "invalid options",
			opts: func() Options { return Options{WorkRoot: "relative"} },
			want: "WorkRoot",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(t.Context(), tt.opts(), executor.Limits{})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Check: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Check error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestCheckUnreachableWorkRoot gives the work root a parent the sandbox
// uid may not traverse.
func TestCheckUnreachableWorkRoot(t *testing.T) {
	requireBwrap(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: as any other user the sandbox shares the agent's uid and reaches its directories")
	}
	closed := filepath.Join(traversableDir(t), "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	err := Check(t.Context(), Options{WorkRoot: filepath.Join(closed, "work"), UIDBase: testUIDBase}, executor.Limits{})
	if err == nil || !strings.Contains(err.Error(), "o+x") || !strings.Contains(err.Error(), closed) {
		t.Errorf("Check error = %v, want one that asks for o+x on %s", err, closed)
	}
}

// TestCheckUserNamespacesDisabled runs Check as a stand-in agent inside a
// sandbox that may not create user namespaces, as on a host where they are
// disabled: Check must pass on bubblewrap's explanation.
func TestCheckUserNamespacesDisabled(t *testing.T) {
	e := newExecutor(t)
	slot := newSlot(t)
	uid, gid, err := e.Identity(slot)
	if err != nil {
		t.Fatal(err)
	}
	// The test binary, where the outer sandbox's uid can reach it.
	dir := traversableDir(t)
	bin := filepath.Join(dir, "bwrap.test")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "agent")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(work, uid, gid); err != nil && e.asRoot {
		t.Fatal(err)
	}
	cmd := exec.Command(DefaultBwrapPath,
		"--unshare-user", "--disable-userns", "--unshare-pid", "--die-with-parent",
		"--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
		"--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
		"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
		"--ro-bind", bin, "/agent.test", "--bind", work, "/agent",
		"--setenv", childModeEnv, "check", "--setenv", childRootEnv, "/agent/work",
		"/agent.test", "-test.run=^$")
	if e.asRoot {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("outer sandbox: %v\n%s", err, out.String())
	}
	got := strings.TrimSpace(out.String())
	if !strings.HasPrefix(got, "check: bubblewrap at /usr/bin/bwrap cannot create a sandbox: ") ||
		!strings.Contains(got, "bwrap: ") || !strings.Contains(got, "user namespaces") {
		t.Errorf("Check where user namespaces are disabled says:\n%s", got)
	}
	t.Logf("Check says: %s", got)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
