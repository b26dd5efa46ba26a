package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nimbus-build/nimbus/internal/registry/registrytest"
)

// bigLayer pushes an image with one layer of about size bytes and returns
// the layer's digest and bytes.
func bigLayer(t *testing.T, e *env, repoTag string, size int64) (string, []byte) {
	t.Helper()
	img := registrytest.RandomImage(t, size, 1)
	e.pushUpstream(repoTag, img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return layerBytes(t, layers[0])
}

func layerBytes(t *testing.T, l v1.Layer) (string, []byte) {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return d.String(), b
}

// countingReader counts what a client has received so far.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func sha(b []byte) string { h := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(h[:]) }

// Eight clients ask for one missing blob at once, from two orgs: the
// upstream sends it once, and each client receives the bytes while they
// arrive — here, half the blob while the upstream holds back the rest —
// not after the whole blob is in. Each org ends up holding the blob.
func TestSingleFlightStreamsToAll(t *testing.T) {
	e := newEnv(t)
	d, want := bigLayer(t, e, "team/big:1", 2<<20)
	e.front.SetFault(registrytest.Stall)
	const n = 8
	var wg sync.WaitGroup
	readers := make([]*countingReader, n)
	bodies := make([][]byte, n)
	errs := make([]error, n)
	started := make(chan struct{}, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := []string{"acme-ci", "globex-ci"}[i%2]
			req, _ := http.NewRequest("GET", e.srv.URL+"/v2/"+upstreamName+"/team/big/blobs/"+d, nil)
			req.SetBasicAuth("nimbus", tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = err
				started <- struct{}{}
				return
			}
			defer resp.Body.Close()
			readers[i] = &countingReader{r: resp.Body}
			started <- struct{}{}
			bodies[i], errs[i] = io.ReadAll(readers[i])
		}()
	}
	for range n {
		<-started
	}
	for i, r := range readers {
		if r == nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
	}
	// While the upstream pauses at half, every client has most of that
	// half already.
	waitFor(t, "every client to receive the first half", func() bool {
		for _, r := range readers {
			if r.n.Load() < int64(len(want))/2-(512<<10) {
				return false
			}
		}
		return true
	})
	e.front.Release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !bytes.Equal(bodies[i], want) {
			t.Fatalf("client %d: %v, %d bytes (want %d)", i, errs[i], len(bodies[i]), len(want))
		}
	}
	if g := e.front.BlobGets(); g != 1 {
		t.Errorf("%d upstream blob GETs for %d concurrent pulls, want 1", g, n)
	}
	waitFor(t, "both orgs to hold the blob", func() bool { return e.held(orgAcme, d) && e.held(orgGlobex, d) })
	// Held by both, stored once: the public layer is shared by digest.
	if b := e.disk.Stats().Bytes; b >= 2*int64(len(want)) {
		t.Errorf("the store holds %d bytes for a %d-byte blob held by two orgs", b, len(want))
	}
	if e.reg.flights.inFlight() != 0 {
		t.Errorf("%d flights left", e.reg.flights.inFlight())
	}
}

// getBlob fetches a blob as a client does and returns what it received
// and the error reading it (an aborted response is an error, never a
// short success).
func getBlob(t *testing.T, e *env, token, repo, d string) (int, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+"/v2/"+repo+"/blobs/"+d, nil)
	req.SetBasicAuth("nimbus", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// An upstream that sends other bytes than the digest says, or cuts the
// blob mid-stream: the client's response is aborted (never a complete
// wrong or short blob), nothing is stored, and a later pull from a
// healthy upstream works.
func TestTamperedAndCutBlobsAreNeverServedOrStored(t *testing.T) {
	e := newEnv(t)
	d, want := bigLayer(t, e, "team/t:1", 1<<20)
	for _, fault := range []registrytest.Fault{registrytest.Corrupt, registrytest.Cut} {
		e.front.SetFault(fault)
		status, b, err := getBlob(t, e, "acme-ci", upstreamName+"/team/t", d)
		if err == nil && status == 200 {
			t.Fatalf("fault %d: a complete answer of %d bytes (matches: %v)", fault, len(b), bytes.Equal(b, want))
		}
		if status == 200 && int64(len(b)) >= int64(len(want)) {
			t.Fatalf("fault %d: the client got %d of %d bytes", fault, len(b), len(want))
		}
		if e.held(orgAcme, d) {
			t.Fatalf("fault %d: the blob was stored", fault)
		}
	}
	e.front.SetFault(registrytest.None)
	status, b, err := getBlob(t, e, "acme-ci", upstreamName+"/team/t", d)
	if err != nil || status != 200 || !bytes.Equal(b, want) {
		t.Fatalf("healthy upstream: %d, %v", status, err)
	}
	waitFor(t, "the blob to be stored", func() bool { return e.held(orgAcme, d) })
}

// A manifest the upstream tampered with (its bytes do not hash to the
// digest asked for, or to the digest it declares) is refused with a
// registry error and not stored.
func TestTamperedManifestRefused(t *testing.T) {
	e := newEnv(t)
	img := registrytest.RandomImage(t, 1024, 1)
	e.pushUpstream("team/m:1", img)
	other := registrytest.RandomImage(t, 1024, 1)
	e.pushUpstream("team/m:other", other)
	// Ask for img's digest under a name whose upstream serves other's
	// manifest at that path: a proxy in between rewrites the request.
	want := registrytest.Digest(t, img)
	otherD := registrytest.Digest(t, other)
	e.front.Rewrite("/v2/team/m/manifests/"+want, "/v2/team/m/manifests/"+otherD)
	resp, b := e.do("GET", "/v2/"+upstreamName+"/team/m/manifests/"+want, "acme-ci", nil)
	if resp.StatusCode != http.StatusBadGateway || ociCode(t, resp, b) != codeUnavailable {
		t.Fatalf("tampered manifest: %d %s", resp.StatusCode, b)
	}
	if e.held(orgAcme, want) || e.held(orgAcme, otherD) {
		t.Fatal("a tampered manifest was stored")
	}
}

// A slow upstream streams through; one that stalls past the idle timeout
// fails the fetch: clients are aborted, nothing is stored.
func TestSlowAndStalledUpstream(t *testing.T) {
	e := newEnv(t, withIdleTimeout(300*time.Millisecond))
	d, want := bigLayer(t, e, "team/s:1", 512<<10)
	e.front.SetFault(registrytest.Slow)
	status, b, err := getBlob(t, e, "acme-ci", upstreamName+"/team/s", d)
	if err != nil || status != 200 || !bytes.Equal(b, want) {
		t.Fatalf("slow upstream: %d %v", status, err)
	}
	d2, _ := bigLayer(t, e, "team/s:2", 512<<10)
	e.front.SetFault(registrytest.Stall)
	status, b, err = getBlob(t, e, "acme-ci", upstreamName+"/team/s", d2)
	if err == nil && status == 200 {
		t.Fatalf("stalled upstream: a complete answer of %d bytes", len(b))
	}
	e.front.Release()
	if e.held(orgAcme, d2) {
		t.Fatal("a stalled fetch was stored")
	}
}

// A client that hangs up mid-pull does not stop the fetch: the blob is
// stored, and the next pull is served without the upstream.
func TestClientAbortMidPull(t *testing.T) {
	e := newEnv(t)
	d, want := bigLayer(t, e, "team/a:1", 1<<20)
	e.front.SetFault(registrytest.Stall)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v2/"+upstreamName+"/team/a/blobs/"+d, nil)
	req.SetBasicAuth("nimbus", "acme-ci")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	e.front.Release()
	waitFor(t, "the blob to be stored after the client left", func() bool { return e.held(orgAcme, d) })
	e.front.Reset()
	status, b, err := getBlob(t, e, "acme-ci", upstreamName+"/team/a", d)
	if err != nil || status != 200 || !bytes.Equal(b, want) || e.front.BlobGets() != 0 {
		t.Fatalf("after the abort: %d %v, %d upstream GETs", status, err, e.front.BlobGets())
	}
}

// Range requests, on a stored blob and on one still arriving.
func TestRange(t *testing.T) {
	e := newEnv(t)
	d, want := bigLayer(t, e, "team/r:1", 256<<10)
	path := "/v2/" + upstreamName + "/team/r/blobs/" + d
	for round := range 2 { // fetched through its flight, then from the store
		resp, b := e.do("GET", path, "acme-ci", nil, "Range", "bytes=100-199")
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, want[100:200]) || resp.Header.Get("Content-Range") == "" {
			t.Fatalf("round %d: %d %q, %d bytes", round, resp.StatusCode, resp.Header.Get("Content-Range"), len(b))
		}
		waitFor(t, "the blob to be stored", func() bool { return e.held(orgAcme, d) })
	}
	resp, b := e.do("GET", path, "acme-ci", nil, "Range", "bytes=999999999-")
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || ociCode(t, resp, b) != codeRangeInvalid {
		t.Errorf("unsatisfiable: %d %s", resp.StatusCode, b)
	}
	resp, b = e.do("HEAD", path, "acme-ci", nil)
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(want)) || resp.Header.Get("Docker-Content-Digest") != sha(want) {
		t.Errorf("HEAD: %d %d", resp.StatusCode, resp.ContentLength)
	}
}
