package cache_test

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"testing"

	"github.com/bazelbuild/remote-apis-sdks/go/pkg/client"
	"github.com/bazelbuild/remote-apis-sdks/go/pkg/digest"
	"github.com/bazelbuild/remote-apis-sdks/go/pkg/uploadinfo"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nimbus-build/nimbus/internal/cache"
)

// TestZstdThroughTheSDK: the server advertises zstd, and the
// remote-apis-sdks client uploads and downloads through it: ByteStream
// compressed-blobs/zstd/… for large blobs, compressed batch calls for small
// ones; what it reads back is what it wrote.
func TestZstdThroughTheSDK(t *testing.T) {
	e := startEnv(t, cache.Config{})
	ctx := context.Background()
	caps, err := repb.NewCapabilitiesClient(e.dial(t, tokCIA)).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if cc := caps.GetCacheCapabilities(); len(cc.GetSupportedCompressors()) != 1 || cc.GetSupportedCompressors()[0] != repb.Compressor_ZSTD ||
		len(cc.GetSupportedBatchUpdateCompressors()) != 1 {
		t.Fatalf("capabilities: %v", cc)
	}
	c, err := client.NewClient(ctx, "main", client.DialParams{Service: e.grpcAddr, NoSecurity: true, NoAuth: true},
		&client.PerRPCCreds{Creds: bearer(tokCIA)}, client.StartupCapabilities(true), client.ChunkMaxSize(64<<10),
		client.CompressedBytestreamThreshold(0), client.UseBatchCompression(true))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	small := bytes.Repeat([]byte("small and compressible "), 40)
	large := append(bytes.Repeat([]byte("large and compressible "), 200_000), randomBytes(3<<20)...)
	var entries []*uploadinfo.Entry
	for _, b := range [][]byte{small, large} {
		entries = append(entries, uploadinfo.EntryFromBlob(b))
	}
	if _, _, err := c.UploadIfMissing(ctx, entries...); err != nil {
		t.Fatalf("compressed upload: %v", err)
	}
	for _, b := range [][]byte{small, large} {
		got, _, err := c.ReadBlob(ctx, digest.NewFromBlob(b))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("compressed read of %d bytes: %v, equal %v", len(b), err, bytes.Equal(got, b))
		}
	}
	batch, err := c.BatchDownloadBlobs(ctx, []digest.Digest{digest.NewFromBlob(small)})
	if err != nil || !bytes.Equal(batch[digest.NewFromBlob(small)], small) {
		t.Fatalf("compressed batch download: %v", err)
	}
	// Stored as sent, uncompressed: a plain read serves the same bytes.
	e2 := sdkClient(t, e, tokCIA)
	if got, _, err := e2.ReadBlob(ctx, digest.NewFromBlob(large)); err != nil || !bytes.Equal(got, large) {
		t.Fatalf("uncompressed read of a compressed upload: %v", err)
	}
}

// TestZstdBadUploads: compressed data that does not decompress to the
// digest, or is not zstd at all, is refused with INVALID_ARGUMENT and
// nothing is stored; another org's compressed read finds nothing.
func TestZstdBadUploads(t *testing.T) {
	e := startEnv(t, cache.Config{})
	ctx := context.Background()
	bs := bytestream.NewByteStreamClient(e.dial(t, tokCIA))
	enc, _ := zstd.NewWriter(nil)
	want := []byte("the real content of the blob")
	d := digest.NewFromBlob(want)
	name := func(kind string) string {
		return "uploads/u1/compressed-blobs/zstd/" + d.Hash + "/" + itoa(d.Size) + kind
	}
	write := func(data []byte) error {
		ws, err := bs.Write(ctx)
		if err != nil {
			return err
		}
		ws.Send(&bytestream.WriteRequest{ResourceName: name(""), Data: data, FinishWrite: true})
		_, err = ws.CloseAndRecv()
		return err
	}
	for what, data := range map[string][]byte{
		"other content": enc.EncodeAll([]byte("the fake content of the blob"), nil),
		"too long":      enc.EncodeAll(append(bytes.Clone(want), '!'), nil),
		"not zstd":      want,
		"truncated":     enc.EncodeAll(want, nil)[:10],
	} {
		if err := write(data); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", what, err)
		}
	}
	read := func(token string) ([]byte, error) {
		rs, err := bytestream.NewByteStreamClient(e.dial(t, token)).Read(ctx, &bytestream.ReadRequest{ResourceName: "compressed-blobs/zstd/" + d.Hash + "/" + itoa(d.Size)})
		if err != nil {
			return nil, err
		}
		var out []byte
		for {
			m, err := rs.Recv()
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				return nil, err
			}
			out = append(out, m.GetData()...)
		}
	}
	if _, err := read(tokCIA); status.Code(err) != codes.NotFound {
		t.Errorf("after refused uploads: %v, want NotFound", err)
	}
	if err := write(enc.EncodeAll(want, nil)); err != nil {
		t.Fatalf("good upload: %v", err)
	}
	got, err := read(tokCIA)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	if plain, err := dec.DecodeAll(got, nil); err != nil || !bytes.Equal(plain, want) {
		t.Errorf("compressed read: %q, %v", plain, err)
	}
	if _, err := read(tokCIB); status.Code(err) != codes.NotFound {
		t.Errorf("another org's compressed read: %v, want NotFound", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
