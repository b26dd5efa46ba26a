package cachebench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// blob is a benchmark blob and its digest.
type blob struct {
	hash string
	data []byte
}

func newBlob(data []byte) blob {
	h := sha256.Sum256(data)
	return blob{hash: hex.EncodeToString(h[:]), data: data}
}

func (b blob) digest() *repb.Digest { return &repb.Digest{Hash: b.hash, SizeBytes: int64(len(b.data))} }

// client is one cache protocol. Methods a protocol lacks return errUnsupported.
type client interface {
	protocol() string
	get(ctx context.Context, b blob) (int64, error)
	put(ctx context.Context, b blob) error
	findMissing(ctx context.Context, bs []blob) error
	batchUpdate(ctx context.Context, bs []blob) error
	batchRead(ctx context.Context, bs []blob) (int64, error)
	Close() error
}

var errUnsupported = fmt.Errorf("not in this protocol")

func newClient(target, token string, concurrency int) (client, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--target %q: want grpc://HOST:PORT or http://HOST:PORT/BASE", target)
	}
	switch u.Scheme {
	case "grpc":
		opts := []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
		}
		if token != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
		}
		conn, err := grpc.NewClient(u.Host, opts...)
		if err != nil {
			return nil, err
		}
		return &grpcClient{conn: conn, cas: repb.NewContentAddressableStorageClient(conn), bs: bytestream.NewByteStreamClient(conn)}, nil
	case "http", "https":
		tr := &http.Transport{MaxIdleConns: concurrency * 2, MaxIdleConnsPerHost: concurrency * 2, IdleConnTimeout: time.Minute, DisableCompression: true,
			ReadBufferSize: 256 << 10, WriteBufferSize: 256 << 10}
		base := strings.TrimSuffix(target, "/")
		return &httpClient{base: base, token: token, hc: &http.Client{Transport: tr}}, nil
	}
	return nil, fmt.Errorf("--target %q: scheme must be grpc or http", target)
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

type grpcClient struct {
	conn *grpc.ClientConn
	cas  repb.ContentAddressableStorageClient
	bs   bytestream.ByteStreamClient
}

func (c *grpcClient) protocol() string { return "grpc" }
func (c *grpcClient) Close() error     { return c.conn.Close() }

func (c *grpcClient) get(ctx context.Context, b blob) (int64, error) {
	// The stream is opened by hand so that the responses go through
	// countingCodec: the load generator counts the bytes instead of copying
	// each chunk into fresh memory, which on this 2-core machine cost the
	// server it shares the CPU with as much as the serving.
	desc := &grpc.StreamDesc{StreamName: "Read", ServerStreams: true}
	stream, err := c.conn.NewStream(ctx, desc, "/google.bytestream.ByteStream/Read", grpc.ForceCodecV2(countingCodec{}))
	if err != nil {
		return 0, err
	}
	if err := stream.SendMsg(&bytestream.ReadRequest{ResourceName: fmt.Sprintf("blobs/%s/%d", b.hash, len(b.data))}); err != nil {
		return 0, err
	}
	if err := stream.CloseSend(); err != nil {
		return 0, err
	}
	var resp readCount
	for {
		err := stream.RecvMsg(&resp)
		if err == io.EOF {
			break
		}
		if err != nil {
			return resp.n, err
		}
	}
	if resp.n != int64(len(b.data)) {
		return resp.n, fmt.Errorf("read %d bytes of %d", resp.n, len(b.data))
	}
	return resp.n, nil
}

// readCount accumulates the data bytes of ByteStream ReadResponses.
type readCount struct{ n int64 }

// countingCodec is the protobuf codec, except that it decodes a
// ReadResponse into a readCount: it checks the message's framing and adds
// the length of its data field, without keeping the bytes.
type countingCodec struct{}

func (countingCodec) Name() string { return "proto" }

func (countingCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(proto.Name).Marshal(v)
}

func (countingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	rc, ok := v.(*readCount)
	if !ok {
		return encoding.GetCodecV2(proto.Name).Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num == 10 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			rc.n += int64(len(v))
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

func (c *grpcClient) put(ctx context.Context, b blob) error {
	stream, err := c.bs.Write(ctx)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("uploads/%s/blobs/%s/%d", uuid.NewString(), b.hash, len(b.data))
	const chunk = 1 << 20
	for off := 0; ; off += chunk {
		end := min(off+chunk, len(b.data))
		req := &bytestream.WriteRequest{WriteOffset: int64(off), Data: b.data[off:end], FinishWrite: end == len(b.data)}
		if off == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err != nil {
			break // the server answered early (blob exists) or failed: CloseAndRecv says which
		}
		if end == len(b.data) {
			break
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	if resp.GetCommittedSize() != int64(len(b.data)) {
		return fmt.Errorf("committed %d of %d bytes", resp.GetCommittedSize(), len(b.data))
	}
	return nil
}

func (c *grpcClient) findMissing(ctx context.Context, bs []blob) error {
	req := &repb.FindMissingBlobsRequest{}
	for _, b := range bs {
		req.BlobDigests = append(req.BlobDigests, b.digest())
	}
	_, err := c.cas.FindMissingBlobs(ctx, req)
	return err
}

func (c *grpcClient) batchUpdate(ctx context.Context, bs []blob) error {
	req := &repb.BatchUpdateBlobsRequest{}
	for _, b := range bs {
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: b.digest(), Data: b.data})
	}
	resp, err := c.cas.BatchUpdateBlobs(ctx, req)
	if err != nil {
		return err
	}
	for _, r := range resp.GetResponses() {
		if codes.Code(r.GetStatus().GetCode()) != codes.OK {
			return fmt.Errorf("blob %s: %s", r.GetDigest().GetHash(), r.GetStatus().GetMessage())
		}
	}
	return nil
}

func (c *grpcClient) batchRead(ctx context.Context, bs []blob) (int64, error) {
	req := &repb.BatchReadBlobsRequest{}
	for _, b := range bs {
		req.Digests = append(req.Digests, b.digest())
	}
	resp, err := c.cas.BatchReadBlobs(ctx, req)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, r := range resp.GetResponses() {
		if codes.Code(r.GetStatus().GetCode()) != codes.OK {
			return n, fmt.Errorf("blob %s: %s", r.GetDigest().GetHash(), r.GetStatus().GetMessage())
		}
		n += int64(len(r.GetData()))
	}
	return n, nil
}

type httpClient struct {
	base  string
	token string
	hc    *http.Client
}

func (c *httpClient) protocol() string { return "http" }
func (c *httpClient) Close() error     { c.hc.CloseIdleConnections(); return nil }

func (c *httpClient) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.hc.Do(req)
}

func (c *httpClient) get(ctx context.Context, b blob) (int64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/cas/"+b.hash, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// Large reads: with io.Discard's 8 KiB ones the benchmark itself, not
	// the server, is the limit on big blobs.
	buf := copyBuffers.Get().(*[]byte)
	n, err := io.CopyBuffer(discard{}, resp.Body, *buf)
	copyBuffers.Put(buf)
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("GET: %s", resp.Status)
	}
	return n, err
}

func (c *httpClient) put(ctx context.Context, b blob) error {
	resp, err := c.do(ctx, http.MethodPut, "/cas/"+b.hash, b.data)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT: %s", resp.Status)
	}
	return nil
}

func (c *httpClient) findMissing(context.Context, []blob) error        { return errUnsupported }
func (c *httpClient) batchUpdate(context.Context, []blob) error        { return errUnsupported }
func (c *httpClient) batchRead(context.Context, []blob) (int64, error) { return 0, errUnsupported }

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// discard is io.Discard without ReadFrom, so io.CopyBuffer uses the
// buffer it is given.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
