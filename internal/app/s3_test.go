package app_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"testing"

	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/s3/s3test"
)

// The cache's S3 tier, configured as an operator would: a blob written
// through the control plane survives the loss of the local disk.
func TestCacheS3TierFromConfig(t *testing.T) {
	s3 := s3test.Start(t)
	s3.Bucket(t, "nimbus-cache")
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) {
		c.CacheS3 = cache.S3Config{Endpoint: s3.Endpoint(), Region: "us-east-1", Bucket: "nimbus-cache", AccessKeyID: s3test.AccessKey,
			SecretAccessKey: s3test.SecretKey, PathStyle: true}
	})
	blob := bytes.Repeat([]byte("a blob worth keeping "), 1000)
	sum := sha256.Sum256(blob)
	url := h.URL + "/cache/cas/" + hex.EncodeToString(sum[:])
	do := func(method string, body []byte) int {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+h.OwnerToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := do("PUT", blob); got/100 != 2 {
		t.Fatalf("PUT: %d", got)
	}
	// The local disk is lost; the bucket still has the blob.
	h.Stop()
	if err := os.RemoveAll(h.Config.CacheDir); err != nil {
		t.Fatal(err)
	}
	h.Restart()
	waitFor(t, 30e9, func() bool { return do("GET", nil) == 200 })
}
