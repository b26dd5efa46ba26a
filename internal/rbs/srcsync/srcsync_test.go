package srcsync

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
)

type syncServer struct {
	tunnelpb.UnimplementedTunnelServer
	tree *Tree
}

func (s *syncServer) Sync(stream tunnelpb.Tunnel_SyncServer) error { return s.tree.Serve(stream) }

// agent is a Tree served over real gRPC on loopback.
type agent struct {
	dir  string
	tree *Tree
	conn *grpc.ClientConn
	srv  *grpc.Server
}

func startAgent(t testing.TB, dir string) *agent {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tree := NewTree(dir, dir+".staging", dir+".state", -1, -1, slog.New(slog.DiscardHandler))
	srv := grpc.NewServer()
	tunnelpb.RegisterTunnelServer(srv, &syncServer{tree: tree})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{dir: dir, tree: tree, conn: conn, srv: srv}
	t.Cleanup(a.stop)
	return a
}

func (a *agent) stop() {
	a.conn.Close()
	a.srv.Stop()
}

func (a *agent) open(ctx context.Context) (SyncStreamClient, error) {
	return tunnelpb.NewTunnelClient(a.conn).Sync(ctx)
}

func write(t testing.TB, root, rel, content string, mode fs.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// Age the file so the stat cache trusts it (see racyWindow).
	old := time.Now().Add(-time.Minute)
	os.Chtimes(p, old, old)
}

// snapshot describes a tree as path -> "file:<content>:<exec>",
// "dir" or "link:<target>".
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			tgt, _ := os.Readlink(p)
			out[rel] = "link:" + tgt
		case d.IsDir():
			out[rel] = "dir"
		default:
			b, _ := os.ReadFile(p)
			info, _ := d.Info()
			out[rel] = fmt.Sprintf("file:%s:%v", b, info.Mode()&0o111 != 0)
		}
		return nil
	})
	return out
}

func TestSync(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	ws := filepath.Join(tmp, "ws")
	write(t, ws, "WORKSPACE", "", 0o644)
	write(t, ws, "BUILD", "genrule()", 0o644)
	write(t, ws, "tools/run.sh", "#!/bin/sh\necho hi\n", 0o755)
	write(t, ws, "pkg/a.txt", "same", 0o644)
	write(t, ws, "pkg/b.txt", "same", 0o644)
	write(t, ws, "ignored/big.bin", "never synced", 0o644)
	write(t, ws, "third_party/node_modules/x.js", "never synced", 0o644)
	write(t, ws, ".bazelignore", "# comment\nignored\nthird_party/node_modules/\n", 0o644)
	os.Symlink("pkg/a.txt", filepath.Join(ws, "link"))
	os.Symlink(filepath.Join(tmp, "out"), filepath.Join(ws, "bazel-out"))
	os.Mkdir(filepath.Join(ws, "empty"), 0o755)

	a := startAgent(t, filepath.Join(tmp, "agent", "ws"))
	statePath := filepath.Join(tmp, "state", "sync")
	c := NewClient(ws, statePath, slog.New(slog.DiscardHandler))
	st, err := c.Sync(ctx, "s1", a.open)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Full || st.Blobs != 5 {
		t.Errorf("first sync: full=%v blobs=%d, want full with 5 distinct contents", st.Full, st.Blobs)
	}
	want := snapshot(t, ws)
	delete(want, "bazel-out")
	for k := range want {
		if strings.HasPrefix(k, "ignored") || strings.HasPrefix(k, "third_party/node_modules") {
			delete(want, k)
		}
	}
	want["third_party"] = "dir"
	if diff := cmp.Diff(want, snapshot(t, a.dir)); diff != "" {
		t.Fatalf("agent copy after first sync (-want +got):\n%s", diff)
	}

	// One edit: one file crosses the wire.
	write(t, ws, "pkg/a.txt", "changed", 0o644)
	st, err = c.Sync(ctx, "s1", a.open)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"pkg/a.txt"}, a.tree.Last().Written); diff != "" || st.Full || st.Blobs != 1 {
		t.Errorf("edit sync: full=%v blobs=%d written (-want +got):\n%s", st.Full, st.Blobs, diff)
	}

	// Deletions, a directory turned into a file, an exec bit flip, a copy of
	// known content (no upload).
	os.RemoveAll(filepath.Join(ws, "tools"))
	write(t, ws, "tools", "now a file", 0o644)
	os.Remove(filepath.Join(ws, "pkg/b.txt"))
	os.Chmod(filepath.Join(ws, "BUILD"), 0o755)
	write(t, ws, "copy.txt", "changed", 0o644)
	if st, err = c.Sync(ctx, "s1", a.open); err != nil {
		t.Fatal(err)
	}
	if st.Blobs != 1 { // "now a file" only
		t.Errorf("blobs %d, want 1", st.Blobs)
	}
	want = snapshot(t, ws)
	delete(want, "bazel-out")
	for k := range want {
		if strings.HasPrefix(k, "ignored") || strings.HasPrefix(k, "third_party/node_modules") {
			delete(want, k)
		}
	}
	want["third_party"] = "dir"
	if diff := cmp.Diff(want, snapshot(t, a.dir)); diff != "" {
		t.Fatalf("agent copy after changes (-want +got):\n%s", diff)
	}

	// Nothing changed: nothing is hashed or sent.
	if st, err = c.Sync(ctx, "s1", a.open); err != nil {
		t.Fatal(err)
	}
	if st.Scan.Hashed != 0 || st.Upserted != 0 || st.Blobs != 0 {
		t.Errorf("no-op sync: %+v", st)
	}

	// A restarted proxy reuses its persisted state.
	c2 := NewClient(ws, statePath, slog.New(slog.DiscardHandler))
	if st, err = c2.Sync(ctx, "s1", a.open); err != nil {
		t.Fatal(err)
	}
	if st.Full || st.Scan.Hashed != 0 || st.Upserted != 0 {
		t.Errorf("sync after proxy restart: %+v", st)
	}

	// A restarted agent (same storage, no memory) asks for a full manifest
	// but receives no content it already has.
	a.stop()
	a2 := startAgent(t, a.dir)
	write(t, ws, "new.txt", "new", 0o644)
	if st, err = c2.Sync(ctx, "s1", a2.open); err != nil {
		t.Fatal(err)
	}
	if !st.Full || st.Blobs != 1 {
		t.Errorf("sync to restarted agent: full=%v blobs=%d, want full with 1 blob", st.Full, st.Blobs)
	}
	if got := a2.tree.Last().Written; !slices.Equal(got, []string{"new.txt"}) {
		t.Errorf("restarted agent wrote %v, want [new.txt]", got)
	}

	// Another session: everything is compared again.
	if st, err = c2.Sync(ctx, "s2", a2.open); err != nil {
		t.Fatal(err)
	}
	if !st.Full || st.Blobs != 0 {
		t.Errorf("sync for a new session: full=%v blobs=%d", st.Full, st.Blobs)
	}
}

func TestScannerCache(t *testing.T) {
	ws := t.TempDir()
	write(t, ws, "a", "1", 0o644)
	write(t, ws, "b", "2", 0o644)
	s := NewScanner(ws)
	_, st, err := s.Scan(context.Background())
	if err != nil || st.Hashed != 2 {
		t.Fatalf("first scan hashed %d, err %v", st.Hashed, err)
	}
	_, st, _ = s.Scan(context.Background())
	if st.Hashed != 0 {
		t.Errorf("second scan hashed %d, want 0", st.Hashed)
	}
	// Freshly written files are rehashed until they are old enough.
	os.WriteFile(filepath.Join(ws, "b"), []byte("3"), 0o644)
	m, st, _ := s.Scan(context.Background())
	if st.Hashed != 1 {
		t.Errorf("after edit hashed %d, want 1", st.Hashed)
	}
	_, st, _ = s.Scan(context.Background())
	if st.Hashed != 1 {
		t.Errorf("racy file hashed %d times, want 1", st.Hashed)
	}
	if m["b"].Size != 1 || m["b"].Kind != Regular {
		t.Errorf("entry b = %+v", m["b"])
	}
}

// TestTreeRefusesEscapes sends hostile manifests straight to a Tree.
func TestTreeRefusesEscapes(t *testing.T) {
	tmp := t.TempDir()
	outside := filepath.Join(tmp, "outside")
	os.Mkdir(outside, 0o755)
	a := startAgent(t, filepath.Join(tmp, "ws"))
	// The sandboxed server could plant a symlink to outside in its copy.
	os.Symlink(outside, filepath.Join(a.dir, "evil"))
	os.Symlink("../outside", filepath.Join(a.dir, "evil2"))
	content := []byte("pwned")
	var d Digest
	copy(d[:], sha256sum(content))
	for _, entries := range [][]*tunnelpb.FileEntry{
		{{Path: "../x", Kind: tunnelpb.FileKind_FILE_KIND_REGULAR, Digest: d[:], Size: 5}},
		{{Path: "/abs", Kind: tunnelpb.FileKind_FILE_KIND_REGULAR, Digest: d[:], Size: 5}},
		{{Path: "a/./b", Kind: tunnelpb.FileKind_FILE_KIND_REGULAR, Digest: d[:], Size: 5}},
		{{Path: "evil", Kind: tunnelpb.FileKind_FILE_KIND_DIRECTORY}, {Path: "evil/x", Kind: tunnelpb.FileKind_FILE_KIND_REGULAR, Digest: d[:], Size: 5}},
		{{Path: "evil2", Kind: tunnelpb.FileKind_FILE_KIND_DIRECTORY}, {Path: "evil2/x", Kind: tunnelpb.FileKind_FILE_KIND_REGULAR, Digest: d[:], Size: 5}},
		{{Path: "nodir/x", Kind: tunnelpb.FileKind_FILE_KIND_REGULAR, Digest: d[:], Size: 5}},
	} {
		stream, err := a.open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(&tunnelpb.SyncRequest{Msg: &tunnelpb.SyncRequest_Manifest{Manifest: &tunnelpb.SyncManifest{Full: true, Upsert: entries, Last: true}}})
		if resp, err := stream.Recv(); err == nil && resp.GetNeed() != nil {
			for range resp.GetNeed().GetDigests() {
				stream.Send(&tunnelpb.SyncRequest{Msg: &tunnelpb.SyncRequest_Blob{Blob: &tunnelpb.Blob{Digest: d[:], Data: content, Last: true}}})
			}
			stream.CloseSend()
			stream.Recv()
		}
		// Whatever happened, nothing may be written outside.
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("manifest %v wrote outside the tree", entries)
		}
		if _, err := os.Stat(filepath.Join(tmp, "x")); err == nil {
			t.Fatalf("manifest %v wrote outside the tree", entries)
		}
	}
}

func TestSyncWatchSkipsUnchanged(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	ws := filepath.Join(tmp, "ws")
	write(t, ws, "a/b/c.txt", "1", 0o644)
	a := startAgent(t, filepath.Join(tmp, "agent"))
	c := NewClient(ws, filepath.Join(tmp, "state"), slog.New(slog.DiscardHandler))
	if err := c.Watch(); err != nil {
		t.Skipf("no inotify: %v", err)
	}
	defer c.Close()
	sync := func() Stats {
		t.Helper()
		st, err := c.Sync(ctx, "s", a.open)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	sync() // full
	sync() // new directories were watched after the scan: scans once more
	if st := sync(); !st.Skipped {
		t.Fatalf("unchanged workspace not skipped: %+v", st)
	}
	// Every kind of change is seen: edit, new file in a deep directory,
	// new directory, removal, chmod.
	for _, change := range []func(){
		func() { os.WriteFile(filepath.Join(ws, "a/b/c.txt"), []byte("2"), 0o644) },
		func() { os.WriteFile(filepath.Join(ws, "a/b/new.txt"), []byte("n"), 0o644) },
		func() { os.MkdirAll(filepath.Join(ws, "d/e"), 0o755) },
		func() { os.WriteFile(filepath.Join(ws, "d/e/f.txt"), []byte("f"), 0o644) },
		func() { os.Remove(filepath.Join(ws, "a/b/new.txt")) },
		func() { os.Chmod(filepath.Join(ws, "a/b/c.txt"), 0o755) },
	} {
		change() // seen at once: no waiting for the event
		if st := sync(); st.Skipped {
			t.Fatalf("a change was skipped")
		}
		for i := 0; i < 2 && !sync().Skipped; i++ {
		}
	}
	if diff := cmp.Diff(snapshot(t, ws), snapshot(t, a.dir)); diff != "" {
		t.Errorf("agent copy differs (-want +got):\n%s", diff)
	}
	// Another session is always synced.
	if st, err := c.Sync(ctx, "other", a.open); err != nil || st.Skipped {
		t.Errorf("sync to a new session: %+v, %v", st, err)
	}
}
