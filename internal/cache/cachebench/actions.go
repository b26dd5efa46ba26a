package cachebench

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
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
// each end to end (tar, zstd and the transfer) in MB/s of the file, then
// the client's phases apart (the transfer, and tar with zstd and the disk),
// each in MB/s of the file too.
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
	// drive runs the client once and returns its whole time and the time
	// of each of its phases (the driver's "ms": download and extract on a
	// restore, create and upload on a save).
	drive := func(mode string) (time.Duration, map[string]time.Duration, error) {
		var out, errb bytes.Buffer
		cmd := exec.CommandContext(ctx, node, script, mode, "deps", key)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = work, env, &out, &errb
		t0 := time.Now()
		err := cmd.Run()
		d := time.Since(t0)
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		var res struct {
			Key *string
			MS  map[string]float64
		}
		if err == nil {
			err = json.Unmarshal([]byte(lines[len(lines)-1]), &res)
		}
		if err != nil || res.Key == nil || *res.Key != key {
			return d, nil, fmt.Errorf("%s: %v: %s", mode, err, tail(out.String()+errb.String(), 500))
		}
		phases := map[string]time.Duration{}
		for k, v := range res.MS {
			phases[k] = time.Duration(v * float64(time.Millisecond))
		}
		return d, phases, nil
	}
	row := func(name string, d time.Duration, err error) result {
		return result{name: name, ops: 1, bytes: o.actionsSize, elapsed: d, p50: d, p99: d, err: err}
	}
	mib := o.actionsSize >> 20
	var rs []result
	fmt.Fprintf(progress, "actions cache save of %d MiB...\n", mib)
	d, phases, err := drive("save")
	rs = append(rs, row(fmt.Sprintf("actions-save-%dm", mib), d, err))
	if err != nil {
		return rs, nil
	}
	for _, ph := range []string{"create", "upload"} {
		if t, ok := phases[ph]; ok {
			rs = append(rs, row(fmt.Sprintf("  of which %s (%s)", ph, actionsPhase[ph]), t, nil))
		}
	}
	os.RemoveAll(data)
	fmt.Fprintf(progress, "actions cache restore of %d MiB...\n", mib)
	d, phases, err = drive("restore")
	if err == nil {
		if fi, serr := os.Stat(filepath.Join(data, "blob")); serr != nil || fi.Size() != o.actionsSize {
			err = fmt.Errorf("restore: the file came back wrong: %v", serr)
		}
	}
	rs = append(rs, row(fmt.Sprintf("actions-restore-%dm", mib), d, err))
	if err == nil {
		for _, ph := range []string{"download", "extract"} {
			if t, ok := phases[ph]; ok {
				rs = append(rs, row(fmt.Sprintf("  of which %s (%s)", ph, actionsPhase[ph]), t, nil))
			}
		}
	}
	return rs, nil
}

// actionsPhase says what each of the client's phases does.
var actionsPhase = map[string]string{
	"create":   "tar and zstd to a file",
	"upload":   "the archive to the server",
	"download": "the archive to a file, one GET",
	"extract":  "unzstd and tar to the disk",
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
