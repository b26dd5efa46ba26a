package cachebench

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache"
)

// runActions saves and restores one archive of o.actionsSize random bytes
// with the real @actions/cache package (its driver script in
// o.actionsClient) through s, as a GitHub Actions job would, and reports
// each end to end (tar, zstd and the transfer) in MB/s of the file.
func runActions(ctx context.Context, s *server, o *options, progress io.Writer) ([]result, error) {
	script := filepath.Join(o.actionsClient, "drive.js")
	if _, err := os.Stat(filepath.Join(o.actionsClient, "node_modules", "@actions", "cache")); err != nil {
		return nil, fmt.Errorf("the @actions/cache client is not installed in %s (npm ci --prefix %s)", o.actionsClient, o.actionsClient)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("node is not installed")
	}
	script, _ = filepath.Abs(script)
	work, err := os.MkdirTemp("", "nimbus-bench-actions-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	data := filepath.Join(work, "deps")
	if err := writeRandomFile(filepath.Join(data, "blob"), o.actionsSize); err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(s.targets["http"], "/cache")
	env := []string{"PATH=" + o.getenv("PATH"), "HOME=" + work, "RUNNER_TEMP=" + filepath.Join(work, "tmp"), "GITHUB_WORKSPACE=" + work}
	for k, v := range cache.JobEnv(base, "", s.token, true) {
		env = append(env, k+"="+v)
	}
	os.MkdirAll(filepath.Join(work, "tmp"), 0o755)
	key := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	drive := func(mode string) (time.Duration, error) {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, node, script, mode, "deps", key)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = work, env, &out, &out
		t0 := time.Now()
		err := cmd.Run()
		d := time.Since(t0)
		if err != nil || !strings.Contains(out.String(), `"key":"`+key+`"`) {
			return d, fmt.Errorf("%s: %v: %s", mode, err, tail(out.String(), 500))
		}
		return d, nil
	}
	name := fmt.Sprintf("actions-%%s-%dm", o.actionsSize>>20)
	var rs []result
	fmt.Fprintf(progress, "actions cache save of %d MiB...\n", o.actionsSize>>20)
	d, err := drive("save")
	rs = append(rs, result{name: fmt.Sprintf(name, "save"), ops: 1, bytes: o.actionsSize, elapsed: d, p50: d, p99: d, err: err})
	if err != nil {
		return rs, nil
	}
	os.RemoveAll(data)
	fmt.Fprintf(progress, "actions cache restore of %d MiB...\n", o.actionsSize>>20)
	d, err = drive("restore")
	if err == nil {
		if fi, serr := os.Stat(filepath.Join(data, "blob")); serr != nil || fi.Size() != o.actionsSize {
			err = fmt.Errorf("restore: the file came back wrong: %v", serr)
		}
	}
	rs = append(rs, result{name: fmt.Sprintf(name, "restore"), ops: 1, bytes: o.actionsSize, elapsed: d, p50: d, p99: d, err: err})
	return rs, nil
}

// writeRandomFile writes size random (incompressible) bytes to path.
func writeRandomFile(path string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var seed [32]byte
	crand.Read(seed[:])
	if _, err := io.CopyN(f, mrand.NewChaCha8(seed), size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
