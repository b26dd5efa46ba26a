package registrytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Skopeo runs the skopeo CLI with its own home and auth file, trusting
// nothing of the machine's configuration.
type Skopeo struct {
	bin  string
	home string
}

// NewSkopeo returns a skopeo runner, or skips the test (fails under
// CI=true) when skopeo is not installed.
func NewSkopeo(t testing.TB) *Skopeo {
	t.Helper()
	return &Skopeo{bin: need(t, "skopeo", "NIMBUS_TEST_SKOPEO"), home: t.TempDir()}
}

// NewSkopeoAt returns a runner of bin with its home in dir (the bench).
func NewSkopeoAt(bin, dir string) *Skopeo { return &Skopeo{bin: bin, home: dir} }

// Copy copies src to dst (transport:reference, e.g. docker://HOST/x:y,
// dir:/tmp/d) with creds ("user:token", or "" for none) for the source,
// over plain HTTP. It returns skopeo's combined output.
func (s *Skopeo) Copy(ctx context.Context, src, dst, creds string) (string, error) {
	args := []string{"--insecure-policy", "copy", "--retry-times", "0", "--src-tls-verify=false", "--dest-tls-verify=false"}
	if creds != "" {
		args = append(args, "--src-creds", creds)
	} else {
		args = append(args, "--src-no-creds")
	}
	return s.run(ctx, append(args, src, dst)...)
}

// CopyTo copies src to dst with creds for the destination (a push).
func (s *Skopeo) CopyTo(ctx context.Context, src, dst, creds string) (string, error) {
	args := []string{"--insecure-policy", "copy", "--retry-times", "0", "--src-tls-verify=false", "--dest-tls-verify=false", "--dest-creds", creds}
	return s.run(ctx, append(args, src, dst)...)
}

// Inspect prints an image's manifest (--raw) with creds.
func (s *Skopeo) Inspect(ctx context.Context, ref, creds string) (string, error) {
	return s.run(ctx, "--insecure-policy", "inspect", "--raw", "--retry-times", "0", "--tls-verify=false", "--creds", creds, ref)
}

// Login runs skopeo login against host with a Nimbus token.
func (s *Skopeo) Login(ctx context.Context, host, token string) (string, error) {
	return s.run(ctx, "login", "--tls-verify=false", "--username", "nimbus", "--password", token, host)
}

func (s *Skopeo) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = []string{
		"HOME=" + s.home,
		"PATH=" + os.Getenv("PATH"),
		"REGISTRY_AUTH_FILE=" + filepath.Join(s.home, "auth.json"),
		"XDG_RUNTIME_DIR=" + s.home,
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(s.home, "registries.conf"),
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("skopeo %v: %w\n%s", args, err, out.String())
	}
	return out.String(), nil
}
