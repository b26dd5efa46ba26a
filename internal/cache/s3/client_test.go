package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/cache/s3"
	"github.com/nimbus-build/nimbus/internal/cache/s3/s3test"
)

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestClientObjects(t *testing.T) {
	srv := s3test.Start(t)
	c := srv.Bucket(t, "objects")
	ctx := context.Background()
	data := randBytes(100_000)
	d := blobstore.DigestOf(data)
	key := "p r+e/fix/" + d.Hash.String()
	if err := c.Put(ctx, key, int64(len(data)), d.Hash.String(), bytes.NewReader(data)); err != nil {
		t.Fatalf("put: %v", err)
	}
	if n, err := c.Head(ctx, key); err != nil || n != int64(len(data)) {
		t.Fatalf("head = %d, %v", n, err)
	}
	r, size, err := c.Get(ctx, key, 10, 20)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if size != int64(len(data)) || !bytes.Equal(got, data[10:30]) {
		t.Errorf("range get: size %d, %d bytes", size, len(got))
	}
	objs, next, err := c.List(ctx, "p r+e/", "")
	if err != nil || next != "" || len(objs) != 1 || objs[0].Key != key || objs[0].Size != int64(len(data)) {
		t.Errorf("list = %+v %q %v", objs, next, err)
	}
	if err := c.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Head(ctx, key); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("head after delete: %v, want ErrNotFound", err)
	}
	if _, _, err := c.Get(ctx, key, 0, 0); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
	// The service checks the payload hash: wrong content is refused.
	if err := c.Put(ctx, key, int64(len(data)), blobstore.DigestOf([]byte("x")).Hash.String(), bytes.NewReader(data)); !errors.Is(err, blobstore.ErrInvalid) {
		t.Errorf("put with a wrong hash: %v, want ErrInvalid", err)
	}
	if _, err := c.Head(ctx, key); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("object with a wrong hash is visible: %v", err)
	}
}

func TestClientBadCredentials(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "creds")
	cfg := srv.Config("creds")
	cfg.SecretAccessKey = "wrong"
	c, err := s3.NewClient(cfg, s3.NewTransport(), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Put(context.Background(), "k", 1, "", bytes.NewReader([]byte("x")))
	var se *s3.Error
	if !errors.As(err, &se) || se.Status != 403 {
		t.Errorf("put with a wrong secret: %v, want a 403 *s3.Error", err)
	}
}
