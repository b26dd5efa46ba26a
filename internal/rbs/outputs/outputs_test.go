package outputs

import (
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
)

func TestParseBEP(t *testing.T) {
	f, err := os.Open("testdata/bazel-4.2.3-test.bep.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseBEP(f)
	if err != nil {
		t.Fatal(err)
	}
	ob := "/tmp/rbsexp/our/092d377775c6a7f16356e22941d6aa98/execroot/__main__/bazel-out/k8-fastbuild"
	want := []string{ob + "/bin/cc", ob + "/bin/g.txt", ob + "/bin/t", ob + "/testlogs/t/test.log", ob + "/testlogs/t/test.xml", "/tmp/rbsexp/ws/t.sh"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseBEP (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"{", "[1,2]", `{"namedSetOfFiles":{"files":"x"}}`} {
		if _, err := ParseBEP(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseBEP(%q) accepted", bad)
		}
	}
	got, err = ParseBEP(strings.NewReader(`{"namedSetOfFiles":{"files":[{"uri":"file:///a/../etc"},{"uri":"http://x/y"},{"uri":"file://host/z"},{"uri":"file:///ok"}]}}`))
	if err != nil || !cmp.Equal(got, []string{"/ok"}) {
		t.Errorf("unsafe URIs kept: %v, %v", got, err)
	}
}

func FuzzParseBEP(f *testing.F) {
	b, _ := os.ReadFile("testdata/bazel-4.2.3-test.bep.json")
	f.Add(b)
	f.Add([]byte(`{"testResult":{"testActionOutput":[{"uri":"file:///x/test.log"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		paths, err := ParseBEP(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for _, p := range paths {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p {
				t.Fatalf("unsafe path %q", p)
			}
		}
	})
}

// localTunnel serves Stat and Read from fixed answers: a small working
// agent, honest or not, without the network.
type localTunnel struct {
	tunnelpb.TunnelClient
	entries []*tunnelpb.FileEntry
	files   map[string][]byte
	lister  *Lister
}

func (l *localTunnel) Stat(ctx context.Context, req *tunnelpb.StatRequest, _ ...grpc.CallOption) (*tunnelpb.StatResponse, error) {
	if l.lister != nil {
		e, err := l.lister.Stat(ctx, req.GetPaths())
		return &tunnelpb.StatResponse{Entries: e}, err
	}
	return &tunnelpb.StatResponse{Entries: l.entries}, nil
}

func (l *localTunnel) Read(_ context.Context, req *tunnelpb.ReadRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[tunnelpb.ReadResponse], error) {
	s := &readStream{}
	for _, p := range req.GetPaths() {
		data := l.files[p]
		if l.lister != nil {
			f, err := l.lister.Open(p)
			if err != nil {
				return nil, err
			}
			data, _ = io.ReadAll(f)
			f.Close()
		}
		s.msgs = append(s.msgs, &tunnelpb.ReadResponse{Path: p, Data: data, Last: true})
	}
	return s, nil
}

type readStream struct {
	grpc.ClientStream
	msgs []*tunnelpb.ReadResponse
}

func (r *readStream) Recv() (*tunnelpb.ReadResponse, error) {
	if len(r.msgs) == 0 {
		return nil, io.EOF
	}
	m := r.msgs[0]
	r.msgs = r.msgs[1:]
	return m, nil
}
func (r *readStream) Header() (metadata.MD, error) { return nil, nil }
func (r *readStream) Trailer() metadata.MD         { return nil }
func (r *readStream) CloseSend() error             { return nil }
func (r *readStream) Context() context.Context     { return context.Background() }

// TestListerFetcherRoundTrip brings a runfiles tree from an agent's
// storage (mirrored paths) to a local output base.
func TestListerFetcherRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	devOB := "/home/u/out/abc" // the developer's path, mirrored by the agent
	storage := filepath.Join(tmp, "storage")
	bin := filepath.Join(storage, "ob", "execroot", "m", "bazel-out", "bin")
	os.MkdirAll(filepath.Join(bin, "hello.runfiles", "m"), 0o755)
	os.WriteFile(filepath.Join(bin, "hello"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "data.txt"), []byte("data"), 0o644)
	os.Symlink(devOB+"/execroot/m/bazel-out/bin/hello", filepath.Join(bin, "hello.runfiles", "m", "hello"))
	os.Symlink(devOB+"/execroot/m/bazel-out/bin/data.txt", filepath.Join(bin, "hello.runfiles", "m", "data.txt"))
	// Planted by a hostile build: must be neither followed nor served.
	os.Symlink("/etc/passwd", filepath.Join(bin, "hello.runfiles", "m", "passwd"))
	os.Symlink("../../../../../../../etc", filepath.Join(bin, "up"))
	os.MkdirAll(filepath.Join(storage, "ws"), 0o755)
	os.Symlink(devOB+"/execroot/m/bazel-out/bin", filepath.Join(storage, "ws", "bazel-bin"))
	root, err := os.OpenRoot(storage)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	lister := &Lister{
		Root: root,
		ToStorage: func(p string) (string, bool) {
			rel, ok := strings.CutPrefix(p, devOB+"/")
			return filepath.Join("ob", rel), ok
		},
		Follow: func(p string) bool { return strings.HasPrefix(p, devOB+"/") },
		Cache:  &DigestCache{},
	}
	if _, err := lister.Open(devOB + "/execroot/m/bazel-out/bin/hello.runfiles/m/passwd"); err == nil {
		t.Error("Open followed a link out of the storage")
	}
	if _, err := lister.Open(devOB + "/execroot/m/bazel-out/bin/up/passwd"); err == nil {
		t.Error("Open followed a relative link out of the storage")
	}

	// The developer's machine: same paths, here under tmp.
	localOB := filepath.Join(tmp, "local", "abc")
	ws := filepath.Join(tmp, "local", "ws")
	os.MkdirAll(ws, 0o755)
	os.MkdirAll(localOB, 0o755)
	// The fetcher works with the developer's paths; map them onto tmp.
	tun := &localTunnel{lister: &Lister{Root: root, Cache: &DigestCache{},
		ToStorage: lister.ToStorage, Follow: lister.Follow}}
	f := &Fetcher{OutputBase: devOB, Workspace: ws, Log: slog.New(slog.DiscardHandler)}
	// Fetch writes through an os.Root of OutputBase: point it at localOB.
	f.OutputBase = localOB
	rewrite := func(p string) string { return strings.Replace(p, devOB, localOB, 1) }
	tun.lister.ToStorage = func(p string) (string, bool) { return lister.ToStorage(strings.Replace(p, localOB, devOB, 1)) }
	tun.lister.Follow = func(p string) bool { return lister.Follow(p) || strings.HasPrefix(p, localOB+"/") }
	links := lister.WorkspaceLinks("ws")
	for _, l := range links {
		l.Target = rewrite(l.Target)
	}
	st, err := f.Fetch(context.Background(), tun, []string{rewrite(devOB + "/execroot/m/bazel-out/bin/hello")}, links)
	if err != nil {
		t.Fatal(err)
	}
	if st.Downloaded != 1 || st.Links != 1 {
		t.Errorf("stats %+v, want 1 download (hello; data.txt is only linked to) and 1 link", st)
	}
	got, err := os.ReadFile(filepath.Join(ws, "bazel-bin", "hello"))
	if err != nil || string(got) != "#!/bin/sh\necho hi\n" {
		t.Errorf("bazel-bin/hello = %q, %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(ws, "bazel-bin", "hello")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("hello not executable: %v", err)
	}
	// A second fetch downloads nothing.
	st, err = f.Fetch(context.Background(), tun, []string{rewrite(devOB + "/execroot/m/bazel-out/bin/hello")}, links)
	if err != nil || st.Downloaded != 0 {
		t.Errorf("second fetch: %+v, %v", st, err)
	}
}

// FuzzFetcher plays a hostile agent: whatever it describes, the fetcher
// writes only under the output base's execroot/ and external/, and in the
// workspace only bazel-* symlinks.
func FuzzFetcher(f *testing.F) {
	f.Add("execroot/a/b", uint8(1), "", []byte("x"))
	f.Add("execroot/../../../x", uint8(1), "", []byte("x"))
	f.Add("server/command_port", uint8(1), "", []byte("x"))
	f.Add("execroot/l", uint8(3), "/etc", []byte(""))
	f.Add("execroot/l/passwd", uint8(1), "", []byte("x"))
	f.Fuzz(func(t *testing.T, rel string, kind uint8, target string, data []byte) {
		tmp := t.TempDir()
		ob := filepath.Join(tmp, "ob")
		ws := filepath.Join(tmp, "ws")
		outside := filepath.Join(tmp, "outside")
		for _, d := range []string{ob, ws, outside} {
			os.Mkdir(d, 0o755)
		}
		sum := sha256.Sum256(data)
		p := ob + "/" + rel
		tun := &localTunnel{
			entries: []*tunnelpb.FileEntry{
				{Path: ob + "/execroot/l", Kind: tunnelpb.FileKind_FILE_KIND_SYMLINK, Target: outside},
				{Path: p, Kind: tunnelpb.FileKind(kind % 4), Target: target, Digest: sum[:], Size: int64(len(data))},
			},
			files: map[string][]byte{p: data},
		}
		fe := &Fetcher{OutputBase: ob, Workspace: ws, Log: slog.New(slog.DiscardHandler)}
		fe.Fetch(context.Background(), tun, []string{p}, []*tunnelpb.FileEntry{{Path: rel, Kind: tunnelpb.FileKind_FILE_KIND_SYMLINK, Target: target}})
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("wrote through a link to outside: %v", ents)
		}
		ents, _ := os.ReadDir(ob)
		for _, e := range ents {
			if e.Name() != "execroot" && e.Name() != "external" {
				t.Fatalf("wrote %s in the output base", e.Name())
			}
		}
		ents, _ = os.ReadDir(ws)
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "bazel-") || e.Type()&fs.ModeSymlink == 0 {
				t.Fatalf("wrote %s in the workspace", e.Name())
			}
		}
		ents, _ = os.ReadDir(tmp)
		if len(ents) != 3 {
			t.Fatalf("wrote beside the output base: %v", ents)
		}
	})
}

// FuzzListerStat: paths asked for by a proxy never make the agent describe
// or open anything outside the session's storage.
func FuzzListerStat(f *testing.F) {
	f.Add("/dev/ob/x")
	f.Add("/dev/ob/../../etc/passwd")
	f.Add("/dev/ob/link/passwd")
	f.Fuzz(func(t *testing.T, p string) {
		tmp := t.TempDir()
		storage := filepath.Join(tmp, "storage")
		os.MkdirAll(filepath.Join(storage, "ob"), 0o755)
		os.WriteFile(filepath.Join(storage, "ob", "x"), []byte("x"), 0o644)
		os.WriteFile(filepath.Join(tmp, "secret"), []byte("s"), 0o644)
		os.Symlink(tmp, filepath.Join(storage, "ob", "link"))
		root, err := os.OpenRoot(storage)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		l := &Lister{Root: root, Cache: &DigestCache{},
			ToStorage: func(d string) (string, bool) {
				rel, ok := strings.CutPrefix(d, "/dev/ob/")
				return filepath.Join("ob", rel), ok && filepath.IsLocal(rel)
			},
			Follow: func(d string) bool { return strings.HasPrefix(d, "/dev/ob/") },
		}
		entries, _ := l.Stat(context.Background(), []string{p, "/dev/ob"})
		for _, e := range entries {
			if e.GetKind() == tunnelpb.FileKind_FILE_KIND_REGULAR && e.GetSize() != 1 {
				t.Fatalf("described a file outside: %v", e)
			}
		}
		if f, err := l.Open(p); err == nil {
			b, _ := io.ReadAll(f)
			f.Close()
			if string(b) != "x" {
				t.Fatalf("opened %q outside the storage: %q", p, b)
			}
		}
	})
}
