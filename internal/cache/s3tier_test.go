package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/cache/disk"
	"github.com/nimbus-build/nimbus/internal/cache/s3"
	"github.com/nimbus-build/nimbus/internal/cache/s3/s3test"
)

func s3Config(srv *s3test.Server, bucket string) *cache.S3Config {
	c := srv.Config(bucket)
	return &cache.S3Config{Endpoint: c.Endpoint, Region: c.Region, Bucket: c.Bucket, PathStyle: true,
		AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, Prefix: "nimbus/"}
}

// TestS3TierAcrossReplicas: a blob written through one cache reaches the
// bucket and is served by another cache (an empty disk) that shares it, to
// the same org only, over HTTP and gRPC.
func TestS3TierAcrossReplicas(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "shared")
	a := startEnv(t, cache.Config{S3: s3Config(srv, "shared")})
	data := []byte("built by replica a")
	d := blobstore.DigestOf(data)
	url := "/cache/cas/" + d.Hash.String()
	if resp, body := httpDo(t, "PUT", a.httpURL+url, tokCIA, data); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT: %s %s", resp.Status, body)
	}
	b := startEnv(t, cache.Config{S3: s3Config(srv, "shared")})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := httpDo(t, "GET", b.httpURL+url, tokCIA, nil)
		if resp.StatusCode == http.StatusOK {
			if string(body) != string(data) {
				t.Fatalf("replica b served %q", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica b never served the blob: %s", resp.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Org b sees nothing of org a's, on either replica, by any route.
	for _, e := range []*env{a, b} {
		if resp, _ := httpDo(t, "GET", e.httpURL+url, tokCIB, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("org b GET: %s, want 404", resp.Status)
		}
		if resp, _ := httpDo(t, "HEAD", e.httpURL+url, tokCIB, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("org b HEAD: %s, want 404", resp.Status)
		}
		cas := repb.NewContentAddressableStorageClient(e.dial(t, tokCIB))
		resp, err := cas.FindMissingBlobs(context.Background(), &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{pd(d)}})
		if err != nil || len(resp.GetMissingBlobDigests()) != 1 {
			t.Errorf("org b FindMissingBlobs = %v, %v; want the digest missing", resp, err)
		}
	}
}

// TestS3Backfill: blobs the disk held before the S3 tier was configured
// (or whose copy was dropped) reach the bucket, each under its own org.
func TestS3Backfill(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "backfill")
	dir := t.TempDir()
	d, err := disk.Open(dir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var refs []blobstore.Ref
	for i := range 30 {
		b := []byte(fmt.Sprintf("blob %d", i))
		ref := blobstore.Ref{Org: []string{"org-a", "org-b"}[i%2], Kind: blobstore.KindCAS, Digest: blobstore.DigestOf(b)}
		if err := blobstore.PutBytes(context.Background(), d, ref, b); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	startEnv(t, cache.Config{Dir: dir, S3: s3Config(srv, "backfill")})

	c, err := s3.NewClient(srv.Config("backfill"), s3.NewTransport(), nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, ref := range refs {
		for {
			st, err := s3.Open(c, s3.Options{Prefix: "nimbus/"})
			if err != nil {
				t.Fatal(err)
			}
			missing, err := st.FindMissing(context.Background(), ref.Org, ref.Kind, []blobstore.Digest{ref.Digest})
			st.Close()
			if err == nil && len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s of %s never reached the bucket (%v)", ref, ref.Org, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		other := map[string]string{"org-a": "org-b", "org-b": "org-a"}[ref.Org]
		st, _ := s3.Open(c, s3.Options{Prefix: "nimbus/"})
		missing, err := st.FindMissing(context.Background(), other, ref.Kind, []blobstore.Digest{ref.Digest})
		st.Close()
		if err != nil || len(missing) != 1 {
			t.Errorf("%s copied for %s too (%v)", ref, other, err)
		}
	}
}

// TestS3TierCompressedBlobs: a blob replica a stores compressed (it came
// compressed) reaches the bucket and replica b, which serves it plain and
// compressed.
func TestS3TierCompressedBlobs(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "shared")
	a := startEnv(t, cache.Config{S3: s3Config(srv, "shared")})
	data := compressibleBytes(9, 300<<10)
	d := blobstore.DigestOf(data)
	enc, _ := zstd.NewWriter(nil)
	batch, err := repb.NewContentAddressableStorageClient(a.dial(t, tokCIA)).BatchUpdateBlobs(context.Background(), &repb.BatchUpdateBlobsRequest{
		Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: pd(d), Data: enc.EncodeAll(data, nil), Compressor: repb.Compressor_ZSTD}},
	})
	if err != nil || batch.GetResponses()[0].GetStatus().GetCode() != 0 {
		t.Fatalf("compressed batch update: %v %v", err, batch)
	}
	b := startEnv(t, cache.Config{S3: s3Config(srv, "shared")})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := httpDo(t, "GET", b.httpURL+"/cache/cas/"+d.Hash.String(), tokCIA, nil)
		if resp.StatusCode == http.StatusOK {
			if !bytes.Equal(body, data) {
				t.Fatalf("replica b served %d other bytes", len(body))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica b never served the blob: %s", resp.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err := readResource(t, b, tokCIA, "compressed-blobs/zstd/"+d.Hash.String()+"/"+itoa(d.Size))
	dec, _ := zstd.NewReader(nil)
	if plain, derr := dec.DecodeAll(got, nil); err != nil || derr != nil || !bytes.Equal(plain, data) {
		t.Errorf("replica b compressed read: %v, %v", err, derr)
	}
}
