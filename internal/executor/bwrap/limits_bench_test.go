package bwrap

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// BenchmarkRunLimits runs `true` in a sandbox: without a cgroup (what an
// agent that is not root gets), in a cgroup without limits (root), with
// cpu, memory and pids limits, and with a disk limit on the slot's
// filesystem (made once, before the timer). The differences are the
// per-job cost of limits.
//
//	go test -run '^$' -bench RunLimits -benchtime 40x ./internal/executor/bwrap/
func BenchmarkRunLimits(b *testing.B) {
	if err := checkBench(b); err != nil {
		b.Skip(err)
	}
	cases := []struct {
		name     string
		noCgroup bool
		limits   executor.Limits
	}{
		{"no cgroup", true, executor.Limits{}},
		{"cgroup", false, executor.Limits{}},
		{"cpu", false, executor.Limits{CPUs: 1}},
		{"memory", false, executor.Limits{Memory: 1 << 30}},
		{"pids", false, executor.Limits{Pids: 1024}},
		{"cpu+memory+pids", false, executor.Limits{CPUs: 1, Memory: 1 << 30, Pids: 1024}},
		{"all+disk", false, executor.Limits{CPUs: 1, Memory: 1 << 30, Pids: 1024, Disk: 10 << 30}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			e, err := New(Options{WorkRoot: benchWorkRoot(b), UIDBase: testUIDBase})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			if c.noCgroup {
				e.cgroups = nil
			}
			spec := executor.Spec{JobID: "bench", Argv: []string{"true"}, Output: io.Discard, Slot: 1, Limits: c.limits}
			if _, err := e.Run(b.Context(), spec); err != nil { // the slot's filesystem is made here
				b.Fatal(err)
			}
			for b.Loop() {
				res, err := e.Run(b.Context(), spec)
				if err != nil || res.ExitCode != 0 {
					b.Fatalf("%+v, %v", res, err)
				}
			}
		})
	}
}

// BenchmarkSlotDisk makes, mounts, unmounts and removes a slot's
// filesystem: the cost of a slot's first job with a disk limit, and of
// the agent's stop.
func BenchmarkSlotDisk(b *testing.B) {
	if err := checkBench(b); err != nil {
		b.Skip(err)
	}
	for _, size := range []int64{1 << 30, 10 << 30, 100 << 30} {
		b.Run(executor.FormatBytes(size), func(b *testing.B) {
			root := benchWorkRoot(b)
			for b.Loop() {
				d, err := makeSlotDisk(root, 0, size)
				if err != nil {
					b.Fatal(err)
				}
				if err := d.release(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func checkBench(b *testing.B) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root")
	}
	if _, err := os.Stat(DefaultBwrapPath); err != nil {
		return err
	}
	return nil
}

// benchWorkRoot is a fresh work root the sandbox uids can reach.
func benchWorkRoot(b *testing.B) string {
	dir := b.TempDir()
	for p := dir; p != filepath.Dir(p) && strings.HasPrefix(p, filepath.Clean(os.TempDir())+"/"); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			b.Fatal(err)
		}
	}
	return filepath.Join(dir, "work")
}
