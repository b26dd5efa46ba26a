package cache_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
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
