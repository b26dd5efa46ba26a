package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/bazelbuild/remote-apis-sdks/go/pkg/client"
	"github.com/bazelbuild/remote-apis-sdks/go/pkg/digest"
	"github.com/bazelbuild/remote-apis-sdks/go/pkg/uploadinfo"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/bytestream"

	"github.com/nimbus-build/nimbus/internal/cache"
)

// sdkClient connects the remote-apis-sdks Go client with token.
func sdkClient(t *testing.T, e *env, token string) *client.Client {
	t.Helper()
	ctx := context.Background()
	c, err := client.NewClient(ctx, "main", client.DialParams{
		Service:    e.grpcAddr,
		NoSecurity: true,
		NoAuth:     true,
	}, &client.PerRPCCreds{Creds: bearer(token)}, client.StartupCapabilities(true), client.ChunkMaxSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestSDKClientRoundTrips(t *testing.T) {
	e := startEnv(t, cache.Config{})
	ctx := context.Background()
	c := sdkClient(t, e, tokCIA)

	small := randomBytes(1000)
	large := randomBytes(3<<20 + 17) // over the batch limit: ByteStream
	var entries []*uploadinfo.Entry
	for _, b := range [][]byte{small, large, {}} {
		entries = append(entries, uploadinfo.EntryFromBlob(b))
	}
	if _, _, err := c.UploadIfMissing(ctx, entries...); err != nil {
		t.Fatalf("upload: %v", err)
	}
	for _, b := range [][]byte{small, large} {
		got, _, err := c.ReadBlob(ctx, digest.NewFromBlob(b))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("read back %d bytes: err %v, equal %v", len(b), err, bytes.Equal(got, b))
		}
	}
	part, _, err := c.ReadBlobRange(ctx, digest.NewFromBlob(large), 1<<20, 100)
	if err != nil || !bytes.Equal(part, large[1<<20:1<<20+100]) {
		t.Fatalf("range read: %v", err)
	}
	missing, err := c.MissingBlobs(ctx, []digest.Digest{digest.NewFromBlob(small), digest.NewFromBlob([]byte("never"))})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]digest.Digest{digest.NewFromBlob([]byte("never"))}, missing); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
	batch, err := c.BatchDownloadBlobs(ctx, []digest.Digest{digest.NewFromBlob(small)})
	if err != nil || !bytes.Equal(batch[digest.NewFromBlob(small)], small) {
		t.Fatalf("batch download: %v", err)
	}

	// A tree: root/{f, sub/{g}}.
	fileG := []byte("g contents")
	sub := &repb.Directory{Files: []*repb.FileNode{{Name: "g", Digest: digest.NewFromBlob(fileG).ToProto()}}}
	subD, _ := c.WriteProto(ctx, sub)
	root := &repb.Directory{
		Files:       []*repb.FileNode{{Name: "f", Digest: digest.NewFromBlob(small).ToProto()}},
		Directories: []*repb.DirectoryNode{{Name: "sub", Digest: subD.ToProto()}},
	}
	rootD, _ := c.WriteProto(ctx, root)
	dirs, err := c.GetDirectoryTree(ctx, rootD.ToProto())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*repb.Directory{root, sub}, dirs, protocmp.Transform()); diff != "" {
		t.Errorf("GetTree (-want +got):\n%s", diff)
	}

	// Action cache: a hit only while every output exists.
	if _, err := c.WriteBlob(ctx, fileG); err != nil {
		t.Fatal(err)
	}
	tree := &repb.Tree{Root: sub}
	treeD, _ := c.WriteProto(ctx, tree)
	ar := &repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: "out/small", Digest: digest.NewFromBlob(small).ToProto()}},
		OutputDirectories: []*repb.OutputDirectory{{Path: "out/dir", TreeDigest: treeD.ToProto()}},
		ExitCode:          0,
	}
	action := digest.NewFromBlob([]byte("action 1")).ToProto()
	if _, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{InstanceName: "main", ActionDigest: action, ActionResult: ar}); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "main", ActionDigest: action})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, ar) {
		t.Errorf("action result = %v, want %v", got, ar)
	}
	// An entry whose outputs were never uploaded is not a hit.
	ar2 := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "x", Digest: digest.NewFromBlob([]byte("not uploaded")).ToProto()}}}
	action2 := digest.NewFromBlob([]byte("action 2")).ToProto()
	if _, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action2, ActionResult: ar2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action2}); status.Code(err) != codes.NotFound {
		t.Errorf("incomplete action result: %v, want NotFound", err)
	}
}

func TestSDKResumableWrite(t *testing.T) {
	e := startEnv(t, cache.Config{})
	ctx := context.Background()
	c := sdkClient(t, e, tokCIA)
	data := randomBytes(1 << 20)
	d := digest.NewFromBlob(data)
	name, err := c.ResourceNameWrite(d.Hash, d.Size)
	if err != nil {
		t.Fatal(err)
	}
	// First half, without finishing: the stream ends, the upload stays.
	n, err := c.WriteBytesAtRemoteOffset(ctx, name, data[:600<<10], true, 0)
	if err != nil || n != 600<<10 {
		t.Fatalf("first part: %d, %v", n, err)
	}
	bs := bytestreamClient(e.dial(t, tokCIA))
	st, err := bs.QueryWriteStatus(ctx, &bsQuery{ResourceName: name})
	if err != nil || st.GetCommittedSize() != 600<<10 || st.GetComplete() {
		t.Fatalf("QueryWriteStatus = %v, %v; want 614400, incomplete", st, err)
	}
	if _, err := c.WriteBytesAtRemoteOffset(ctx, name, data[600<<10:], false, 600<<10); err != nil {
		t.Fatalf("resume: %v", err)
	}
	got, _, err := c.ReadBlob(ctx, d)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after resumed write: %v", err)
	}
	st, err = bs.QueryWriteStatus(ctx, &bsQuery{ResourceName: name})
	if err != nil || !st.GetComplete() || st.GetCommittedSize() != d.Size {
		t.Fatalf("QueryWriteStatus after finish = %v, %v", st, err)
	}
	// Writing it again completes at once, after the first message.
	name2, _ := c.ResourceNameWrite(d.Hash, d.Size)
	ws, err := bs.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Send(&bytestream.WriteRequest{ResourceName: name2, Data: data[:1000]}); err != nil {
		t.Fatal(err)
	}
	resp, err := ws.CloseAndRecv()
	if err != nil || resp.GetCommittedSize() != d.Size {
		t.Fatalf("rewrite of an existing blob: %v, %v; want committed size %d", resp, err, d.Size)
	}
}

type bsQuery = bytestream.QueryWriteStatusRequest

func bytestreamClient(conn grpc.ClientConnInterface) bytestream.ByteStreamClient {
	return bytestream.NewByteStreamClient(conn)
}
