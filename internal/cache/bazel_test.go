package cache_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

const bazelPath = "/usr/bin/bazel"

// bazelRun runs one `bazel --batch build` of //:all with a fresh output base
// (a clean build) and returns how many actions were remote cache hits.
type bazelRun struct {
	userRoot  string
	workspace string
	n         int
}

func newBazel(t *testing.T) *bazelRun {
	needTool(t, bazelPath, "apt-get install bazel-bootstrap")
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	os.MkdirAll(ws, 0o755)
	os.WriteFile(filepath.Join(ws, "WORKSPACE"), nil, 0o644)
	os.WriteFile(filepath.Join(ws, "BUILD"), []byte(`
genrule(name = "a", outs = ["a.txt"], cmd = "echo nimbus > $@")
genrule(name = "b", srcs = [":a"], outs = ["b.txt"], cmd = "cat $< $< > $@")
genrule(name = "d", outs = ["d/x.txt", "d/y.txt"], cmd = "for f in $(OUTS); do echo $$f > $$f; done")
genrule(name = "log", outs = ["log.txt"], cmd = "for i in $$(seq 1 2000); do echo line $$i of an output that compresses; done > $@")
`), 0o644)
	os.MkdirAll(filepath.Join(dir, "home"), 0o755)
	return &bazelRun{userRoot: filepath.Join(dir, "root"), workspace: ws}
}

var hitsRE = regexp.MustCompile(`(\d+) remote cache hit`)

func (b *bazelRun) build(t *testing.T, flags ...string) (hits int, out string) {
	t.Helper()
	hits, out, err := b.try(flags...)
	if err != nil {
		t.Fatalf("bazel %v: %v\n%s", flags, err, out)
	}
	return hits, out
}

func (b *bazelRun) try(flags ...string) (hits int, out string, err error) {
	b.n++
	args := []string{"--batch", "--output_user_root=" + b.userRoot,
		"--output_base=" + filepath.Join(b.userRoot, fmt.Sprintf("base%d", b.n)),
		"build", "//:all", "--noshow_progress", "--remote_timeout=30"}
	cmd := exec.Command(bazelPath, append(args, flags...)...)
	cmd.Dir = b.workspace
	cmd.Env = []string{"HOME=" + filepath.Join(filepath.Dir(b.workspace), "home"), "PATH=/usr/bin:/bin", "TMPDIR=" + os.TempDir()}
	o, err := cmd.CombinedOutput()
	if m := hitsRE.FindSubmatch(o); m != nil {
		hits, _ = strconv.Atoi(string(m[1]))
	}
	return hits, string(o), err
}

// logOutput is what //:log writes (stored compressed by the cache).
func logOutput() []byte {
	var b bytes.Buffer
	for i := 1; i <= 2000; i++ {
		fmt.Fprintf(&b, "line %d of an output that compresses\n", i)
	}
	return b.Bytes()
}

// checkCompressedOutput checks that the clean rebuild downloaded //:log
// intact, and that the cache holds it compressed.
func checkCompressedOutput(t *testing.T, b *bazelRun, dir string) {
	t.Helper()
	want := logOutput()
	if got, err := os.ReadFile(filepath.Join(b.workspace, "bazel-bin", "log.txt")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("//:log from the cache: %d bytes, %v; want the %d built", len(got), err, len(want))
	}
	files, _ := filepath.Glob(filepath.Join(dir, "orgs", "*", "cas", "*", blobstore.DigestOf(want).Hash.String()+".zst"))
	if len(files) != 1 {
		t.Errorf("//:log's blob is not stored compressed (%v)", files)
	}
}

// TestBazel drives Bazel 4.2.3 against the cache over gRPC and HTTP: a
// clean rebuild is served from the cache (an output stored compressed at
// rest included), a read-only token reads but never writes, another org
// gets no hits.
func TestBazel(t *testing.T) {
	b := newBazel(t)
	const actions = 4
	t.Run("grpc", func(t *testing.T) {
		dir := t.TempDir()
		e := startEnv(t, cache.Config{Dir: dir})
		grpcURL := "--remote_cache=grpc://" + e.grpcAddr
		header := func(tok string) string { return "--remote_header=Authorization=Bearer " + tok }

		// A developer's token is read-only: Capabilities says so, and
		// Bazel refuses to start uploading.
		if _, out, err := b.try(grpcURL, header(tokDevA)); err == nil || !strings.Contains(out, "not authorized to write") {
			t.Fatalf("Bazel did not see a read-only cache: %v\n%s", err, out)
		}
		readOnly := "--noremote_upload_local_results"
		if hits, out := b.build(t, grpcURL, header(tokDevA), readOnly); hits != 0 {
			t.Fatalf("read-only build on an empty cache got %d hits\n%s", hits, out)
		}
		if got := entries(e); got != 0 {
			t.Fatalf("a read-only token wrote %d entries", got)
		}
		if hits, out := b.build(t, grpcURL, header(tokCIA)); hits != 0 {
			t.Fatalf("first CI build got %d hits\n%s", hits, out)
		}
		if hits, out := b.build(t, grpcURL, header(tokCIA)); hits != actions {
			t.Fatalf("clean rebuild got %d remote cache hits, want %d\n%s", hits, actions, out)
		}
		checkCompressedOutput(t, b, dir)
		if hits, out := b.build(t, grpcURL, header(tokDevA), readOnly); hits != actions {
			t.Fatalf("read-only clean build got %d hits, want %d\n%s", hits, actions, out)
		}
		if hits, out := b.build(t, grpcURL, header(tokCIB)); hits != 0 {
			t.Fatalf("another org's token got %d hits\n%s", hits, out)
		}
	})
	t.Run("http", func(t *testing.T) {
		dir := t.TempDir()
		e := startEnv(t, cache.Config{Dir: dir})
		// Basic auth with the token as the password, as Bazel users write it.
		url := func(tok string) string {
			return "--remote_cache=http://bazel:" + tok + "@" + e.httpURL[len("http://"):] + "/cache"
		}
		if hits, out := b.build(t, url(tokCIA)); hits != 0 {
			t.Fatalf("first CI build got %d hits\n%s", hits, out)
		}
		if hits, out := b.build(t, url(tokCIA)); hits != actions {
			t.Fatalf("clean rebuild got %d remote cache hits, want %d\n%s", hits, actions, out)
		}
		checkCompressedOutput(t, b, dir)
		if hits, out := b.build(t, url(tokCIB)); hits != 0 {
			t.Fatalf("another org's token got %d hits\n%s", hits, out)
		}
	})
}

func entries(e *env) int { return e.svc.Entries() }
