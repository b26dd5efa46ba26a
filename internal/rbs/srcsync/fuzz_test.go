package srcsync

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
)

func sha256sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// fakeStream feeds a Tree.Serve call from a list of requests; it is a
// working in-memory stream, not a mock of Tree's behaviour.
type fakeStream struct {
	ctx  context.Context
	reqs []*tunnelpb.SyncRequest
	sent []*tunnelpb.SyncResponse
}

func (f *fakeStream) Recv() (*tunnelpb.SyncRequest, error) {
	if len(f.reqs) == 0 {
		return nil, io.EOF
	}
	r := f.reqs[0]
	f.reqs = f.reqs[1:]
	return r, nil
}
func (f *fakeStream) Send(r *tunnelpb.SyncResponse) error { f.sent = append(f.sent, r); return nil }
func (f *fakeStream) Context() context.Context            { return f.ctx }
func (f *fakeStream) SetHeader(metadata.MD) error         { return nil }
func (f *fakeStream) SendHeader(metadata.MD) error        { return nil }
func (f *fakeStream) SetTrailer(metadata.MD)              {}
func (f *fakeStream) SendMsg(any) error                   { return nil }
func (f *fakeStream) RecvMsg(any) error                   { return nil }

// FuzzTreeSync feeds arbitrary Sync requests (as the agent would receive
// them from a proxy) to a Tree and checks that nothing is ever written
// outside its directory and that it never panics.
func FuzzTreeSync(f *testing.F) {
	content := []byte("data")
	d := sha256sum(content)
	seed := func(reqs ...*tunnelpb.SyncRequest) {
		var all []byte
		for _, r := range reqs {
			b, _ := proto.Marshal(r)
			all = append(all, byte(len(b)>>8), byte(len(b)))
			all = append(all, b...)
		}
		f.Add(all)
	}
	seed(&tunnelpb.SyncRequest{Msg: &tunnelpb.SyncRequest_Manifest{Manifest: &tunnelpb.SyncManifest{Full: true, Last: true, Upsert: []*tunnelpb.FileEntry{
		{Path: "a", Kind: tunnelpb.FileKind_FILE_KIND_DIRECTORY},
		{Path: "a/f", Kind: tunnelpb.FileKind_FILE_KIND_REGULAR, Digest: d, Size: 4},
		{Path: "l", Kind: tunnelpb.FileKind_FILE_KIND_SYMLINK, Target: "../../etc"},
	}}}}, &tunnelpb.SyncRequest{Msg: &tunnelpb.SyncRequest_Blob{Blob: &tunnelpb.Blob{Digest: d, Data: content, Last: true}}})
	seed(&tunnelpb.SyncRequest{Msg: &tunnelpb.SyncRequest_Manifest{Manifest: &tunnelpb.SyncManifest{Full: true, Last: true, Upsert: []*tunnelpb.FileEntry{
		{Path: "esc", Kind: tunnelpb.FileKind_FILE_KIND_SYMLINK, Target: "/tmp"},
		{Path: "esc/f", Kind: tunnelpb.FileKind_FILE_KIND_REGULAR, Digest: d, Size: 4},
	}}}}, &tunnelpb.SyncRequest{Msg: &tunnelpb.SyncRequest_Blob{Blob: &tunnelpb.Blob{Digest: d, Data: content, Last: true}}})

	f.Fuzz(func(t *testing.T, data []byte) {
		var reqs []*tunnelpb.SyncRequest
		for len(data) >= 2 {
			n := int(data[0])<<8 | int(data[1])
			data = data[2:]
			if n > len(data) {
				n = len(data)
			}
			var r tunnelpb.SyncRequest
			if proto.Unmarshal(data[:n], &r) == nil {
				reqs = append(reqs, &r)
			}
			data = data[n:]
		}
		tmp := t.TempDir()
		ws := filepath.Join(tmp, "a", "ws")
		os.MkdirAll(ws, 0o755)
		tree := NewTree(ws, filepath.Join(tmp, "staging"), "", -1, -1, slog.New(slog.DiscardHandler))
		tree.Serve(&fakeStream{ctx: context.Background(), reqs: reqs})
		// Only a/ws (and the staging dir, removed after the sync) may exist.
		ents, _ := os.ReadDir(tmp)
		for _, e := range ents {
			if e.Name() != "a" && e.Name() != "staging" {
				t.Fatalf("wrote %s outside the tree", e.Name())
			}
		}
		ents, _ = os.ReadDir(filepath.Join(tmp, "a"))
		if len(ents) != 1 {
			t.Fatalf("wrote beside the tree: %v", ents)
		}
	})
}

func TestStateRoundTrip(t *testing.T) {
	var d Digest
	d[3] = 7
	want := stateFile{
		SessionID: "s", Version: "v",
		Synced: Manifest{"a": {Kind: Dir}, "a/b": {Kind: Regular, Exec: true, Size: 3, Digest: d}, "l": {Kind: Symlink, Target: "/x"}},
		Cache:  map[string]cacheEntry{"a/b": {Key: statKey{Size: 3, Mtime: -1, Ctime: 2, Ino: 9, Mode: 0o755}, Entry: Entry{Kind: Regular, Size: 3, Digest: d}, Racy: true}},
	}
	got, err := decodeState(want.encode())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// FuzzDecodeState: the state file lives in the output base; a damaged one
// must be refused, never crash the proxy.
func FuzzDecodeState(f *testing.F) {
	f.Add(stateFile{SessionID: "s", Synced: Manifest{"a": {Kind: Dir}}, Cache: map[string]cacheEntry{}}.encode())
	f.Add([]byte(stateMagic + "\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeState(b)
		if err != nil {
			return
		}
		for p := range s.Synced {
			if ValidatePath(p) != nil {
				t.Fatalf("accepted path %q", p)
			}
		}
	})
}

// hostileAgent answers a client's sync from fuzz data.
type hostileAgent struct {
	grpc.ClientStream
	resps []*tunnelpb.SyncResponse
}

func (h *hostileAgent) Send(*tunnelpb.SyncRequest) error { return nil }
func (h *hostileAgent) CloseSend() error                 { return nil }
func (h *hostileAgent) Recv() (*tunnelpb.SyncResponse, error) {
	if len(h.resps) == 0 {
		return nil, io.EOF
	}
	r := h.resps[0]
	h.resps = h.resps[1:]
	return r, nil
}

// FuzzClientSync: whatever an agent answers, the proxy's sync returns an
// error or a result, and never sends a file outside the workspace.
func FuzzClientSync(f *testing.F) {
	need, _ := proto.Marshal(&tunnelpb.SyncResponse{Msg: &tunnelpb.SyncResponse_Need{Need: &tunnelpb.SyncNeed{Digests: [][]byte{sha256sum([]byte("a"))}}}})
	done, _ := proto.Marshal(&tunnelpb.SyncResponse{Msg: &tunnelpb.SyncResponse_Done{Done: &tunnelpb.SyncDone{Version: "v"}}})
	f.Add(need, done)
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ws := t.TempDir()
		os.WriteFile(filepath.Join(ws, "f"), []byte("a"), 0o644)
		var resps []*tunnelpb.SyncResponse
		for _, raw := range [][]byte{a, b} {
			var r tunnelpb.SyncResponse
			if proto.Unmarshal(raw, &r) == nil {
				resps = append(resps, &r)
			}
		}
		c := NewClient(ws, filepath.Join(t.TempDir(), "state"), slog.New(slog.DiscardHandler))
		c.Sync(context.Background(), "s", func(context.Context) (SyncStreamClient, error) {
			return &hostileAgent{resps: resps}, nil
		})
	})
}
