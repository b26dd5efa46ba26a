package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
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

// compressibleBytes returns n bytes of text that zstd shrinks many times.
func compressibleBytes(seed, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%d: line %d of a build log that says much the same thing again\n", seed, i)
	}
	return b.Bytes()[:n]
}

func readResource(t *testing.T, e *env, token, resource string) ([]byte, error) {
	t.Helper()
	rs, err := bytestream.NewByteStreamClient(e.dial(t, token)).Read(context.Background(), &bytestream.ReadRequest{ResourceName: resource})
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
			return out, err
		}
		out = append(out, m.GetData()...)
	}
}

// TestZstdStoredAtRest: through the real clients, a blob that compresses
// is kept compressed on disk, whether it came plain (the remote-apis-sdks
// client without compression, Bazel's HTTP PUT) or compressed; a
// compressed read (ByteStream or a batch read accepting zstd) serves the
// stored bytes as they are, with no encoder used: an upload made by
// another encoder (best level, no checksum) comes back byte for byte;
// plain reads (ByteStream, HTTP GET) get the original bytes, and the
// SDK's compressed reads decode to them.
func TestZstdStoredAtRest(t *testing.T) {
	dir := t.TempDir()
	e := startEnv(t, cache.Config{Dir: dir})
	ctx := context.Background()
	plain := sdkClient(t, e, tokCIA)
	sent := compressibleBytes(1, 2<<20)
	if _, err := plain.WriteBlob(ctx, sent); err != nil {
		t.Fatal(err)
	}
	viaHTTP := compressibleBytes(2, 300<<10)
	if resp, body := httpDo(t, "PUT", e.httpURL+"/cache/cas/"+digest.NewFromBlob(viaHTTP).Hash, tokCIA, viaHTTP); resp.StatusCode != 200 {
		t.Fatalf("HTTP PUT: %s %s", resp.Status, body)
	}
	stored := func(b []byte) []byte {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(dir, "orgs", "*", "cas", "*", digest.NewFromBlob(b).Hash+".zst"))
		if len(files) != 1 {
			t.Fatalf("%d compressed files for a %d-byte blob, want 1", len(files), len(b))
		}
		f, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(f) > len(b)/4 {
			t.Errorf("%d bytes stored for %d", len(f), len(b))
		}
		return f[16:] // past the header
	}

	// Uploaded compressed by an encoder unlike the server's.
	other, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderCRC(false))
	upload := compressibleBytes(3, 100<<10)
	frame := other.EncodeAll(upload, nil)
	d := digest.NewFromBlob(upload)
	ws, err := bytestream.NewByteStreamClient(e.dial(t, tokCIA)).Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(frame); off += 16 << 10 {
		end := min(off+16<<10, len(frame))
		req := &bytestream.WriteRequest{WriteOffset: int64(off), Data: frame[off:end], FinishWrite: end == len(frame)}
		if off == 0 {
			req.ResourceName = "uploads/u2/compressed-blobs/zstd/" + d.Hash + "/" + itoa(d.Size)
		}
		if err := ws.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ws.CloseAndRecv(); err != nil {
		t.Fatalf("compressed upload: %v", err)
	}
	if !bytes.Equal(stored(upload), frame) {
		t.Error("a compressed upload is not stored as it came")
	}

	before := blobstore.Compressions()
	for _, b := range [][]byte{sent, viaHTTP, upload} {
		d := digest.NewFromBlob(b)
		want := stored(b)
		got, err := readResource(t, e, tokCIA, "compressed-blobs/zstd/"+d.Hash+"/"+itoa(d.Size))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("compressed ByteStream read of %d bytes: %v; the stored bytes: %v", len(b), err, bytes.Equal(got, want))
		}
		if got, err := readResource(t, e, tokCIA, "blobs/"+d.Hash+"/"+itoa(d.Size)); err != nil || !bytes.Equal(got, b) {
			t.Errorf("plain ByteStream read of %d bytes: %v", len(b), err)
		}
		if resp, body := httpDo(t, "GET", e.httpURL+"/cache/cas/"+d.Hash, tokCIA, nil); resp.StatusCode != 200 || !bytes.Equal(body, b) {
			t.Errorf("HTTP GET of %d bytes: %s, same bytes %v", len(b), resp.Status, bytes.Equal(body, b))
		}
	}
	batch, err := repb.NewContentAddressableStorageClient(e.dial(t, tokCIA)).BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{
		Digests: []*repb.Digest{d.ToProto()}, AcceptableCompressors: []repb.Compressor_Value{repb.Compressor_ZSTD},
	})
	if err != nil || len(batch.GetResponses()) != 1 || batch.GetResponses()[0].GetCompressor() != repb.Compressor_ZSTD ||
		!bytes.Equal(batch.GetResponses()[0].GetData(), frame) {
		t.Errorf("batch read accepting zstd: %v; the stored bytes: %v", err, err == nil && bytes.Equal(batch.GetResponses()[0].GetData(), frame))
	}
	if n := blobstore.Compressions() - before; n != 0 {
		t.Errorf("reads of blobs stored compressed used an encoder %d times", n)
	}

	sdk, err := client.NewClient(ctx, "main", client.DialParams{Service: e.grpcAddr, NoSecurity: true, NoAuth: true},
		&client.PerRPCCreds{Creds: bearer(tokCIA)}, client.StartupCapabilities(true), client.ChunkMaxSize(64<<10),
		client.CompressedBytestreamThreshold(0), client.UseBatchCompression(true))
	if err != nil {
		t.Fatal(err)
	}
	defer sdk.Close()
	for _, b := range [][]byte{sent, viaHTTP, upload} {
		if got, _, err := sdk.ReadBlob(ctx, digest.NewFromBlob(b)); err != nil || !bytes.Equal(got, b) {
			t.Errorf("SDK compressed read of %d bytes: %v", len(b), err)
		}
	}
	// Another org sees none of it, compressed or not.
	if _, err := readResource(t, e, tokCIB, "compressed-blobs/zstd/"+d.Hash+"/"+itoa(d.Size)); status.Code(err) != codes.NotFound {
		t.Errorf("another org's compressed read: %v, want NotFound", err)
	}
}

// TestZstdAtRestOff: with NoCompression every blob is stored as it came,
// and zstd still works on the wire.
func TestZstdAtRestOff(t *testing.T) {
	dir := t.TempDir()
	e := startEnv(t, cache.Config{Dir: dir, NoCompression: true})
	b := compressibleBytes(4, 200<<10)
	if _, err := sdkClient(t, e, tokCIA).WriteBlob(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	d := digest.NewFromBlob(b)
	if files, _ := filepath.Glob(filepath.Join(dir, "orgs", "*", "cas", "*", d.Hash+"*")); len(files) != 1 || filepath.Ext(files[0]) == ".zst" {
		t.Fatalf("stored as %v, want one plain file", files)
	}
	got, err := readResource(t, e, tokCIA, "compressed-blobs/zstd/"+d.Hash+"/"+itoa(d.Size))
	dec, _ := zstd.NewReader(nil)
	if plain, derr := dec.DecodeAll(got, nil); err != nil || derr != nil || !bytes.Equal(plain, b) {
		t.Errorf("compressed read: %v, %v", err, derr)
	}
}
