package cache_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

func pd(d blobstore.Digest) *repb.Digest {
	return &repb.Digest{Hash: d.Hash.String(), SizeBytes: d.Size}
}

// TestAccessMatrix is the policy proof for the cache: every kind of caller
// against every operation, over gRPC and HTTP, with the outcome it must get.
func TestAccessMatrix(t *testing.T) {
	e := startEnv(t, cache.Config{})
	ctx := context.Background()
	blobA := []byte("org a's secret build output")
	dA := blobstore.DigestOf(blobA)
	// Org a's CI uploads a blob and an action result.
	{
		cas := repb.NewContentAddressableStorageClient(e.dial(t, tokCIA))
		if _, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: pd(dA), Data: blobA}}}); err != nil {
			t.Fatal(err)
		}
		ac := repb.NewActionCacheClient(e.dial(t, tokCIA))
		if _, err := ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: pd(dA), ActionResult: &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "o", Digest: pd(dA)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	type outcome struct {
		UpdateEnabled bool
		SeesBlob      codes.Code // FindMissing says present (OK) or missing (NotFound)
		ReadAC        codes.Code
		WriteCAS      codes.Code
		WriteAC       codes.Code
		HTTPGet       int
		HTTPHead      int
		HTTPPut       int
	}
	tests := []struct {
		token string
		want  outcome
	}{
		{tokCIA, outcome{true, codes.OK, codes.OK, codes.OK, codes.OK, 200, 200, 200}},
		{tokJobA, outcome{true, codes.OK, codes.OK, codes.OK, codes.OK, 200, 200, 200}},
		{tokDevA, outcome{false, codes.OK, codes.OK, codes.PermissionDenied, codes.PermissionDenied, 200, 200, 403}},
		{tokCIB, outcome{true, codes.NotFound, codes.NotFound, codes.OK, codes.OK, 404, 404, 200}},
		{"no-such-token", outcome{false, codes.Unauthenticated, codes.Unauthenticated, codes.Unauthenticated, codes.Unauthenticated, 401, 401, 401}},
		{"", outcome{false, codes.Unauthenticated, codes.Unauthenticated, codes.Unauthenticated, codes.Unauthenticated, 401, 401, 401}},
	}
	for _, tc := range tests {
		t.Run(tc.token, func(t *testing.T) {
			conn := e.dial(t, tc.token)
			var got outcome
			if caps, err := repb.NewCapabilitiesClient(conn).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{}); err == nil {
				got.UpdateEnabled = caps.GetCacheCapabilities().GetActionCacheUpdateCapabilities().GetUpdateEnabled()
			}
			cas := repb.NewContentAddressableStorageClient(conn)
			fm, err := cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{pd(dA)}})
			switch {
			case err != nil:
				got.SeesBlob = status.Code(err)
			case len(fm.GetMissingBlobDigests()) == 1:
				got.SeesBlob = codes.NotFound
			}
			_, err = repb.NewActionCacheClient(conn).GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: pd(dA)})
			got.ReadAC = status.Code(err)
			own := []byte("written by " + tc.token)
			bu, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: pd(blobstore.DigestOf(own)), Data: own}}})
			got.WriteCAS = status.Code(err)
			if err == nil {
				got.WriteCAS = codes.Code(bu.GetResponses()[0].GetStatus().GetCode())
			}
			_, err = repb.NewActionCacheClient(conn).UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: pd(blobstore.DigestOf(own)), ActionResult: &repb.ActionResult{}})
			got.WriteAC = status.Code(err)
			resp, _ := httpDo(t, "GET", e.httpURL+"/cache/cas/"+dA.Hash.String(), tc.token, nil)
			got.HTTPGet = resp.StatusCode
			resp, _ = httpDo(t, "HEAD", e.httpURL+"/cache/cas/"+dA.Hash.String(), tc.token, nil)
			got.HTTPHead = resp.StatusCode
			resp, _ = httpDo(t, "PUT", e.httpURL+"/cache/cas/"+blobstore.DigestOf(own).Hash.String(), tc.token, own)
			got.HTTPPut = resp.StatusCode
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestBadInputGetsClearErrors checks that malformed requests are refused
// with a 4xx and a JSON body, or INVALID_ARGUMENT, never a 500.
func TestBadInputGetsClearErrors(t *testing.T) {
	e := startEnv(t, cache.Config{})
	good := []byte("content")
	d := blobstore.DigestOf(good)
	httpTests := []struct {
		method, path string
		body         []byte
		want         int
	}{
		{"GET", "/cache/cas/zz", nil, 400},
		{"GET", "/cache/cas/" + strings.ToUpper(d.Hash.String()), nil, 400},
		{"GET", "/cache/xyz/" + d.Hash.String(), nil, 404},
		{"GET", "/cache/cas/..%2f..%2f..%2fetc%2fpasswd", nil, 400},
		{"PUT", "/cache/cas/" + d.Hash.String(), []byte("other content"), 400},
		{"PUT", "/cache/ac/" + d.Hash.String(), []byte("\xff\xff not a proto"), 400},
		{"DELETE", "/cache/cas/" + d.Hash.String(), nil, 405},
		{"GET", "/cache/cas/" + d.Hash.String(), nil, 404},
	}
	for _, tc := range httpTests {
		resp, body := httpDo(t, tc.method, e.httpURL+tc.path, tokCIA, tc.body)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d (%s)", tc.method, tc.path, resp.StatusCode, tc.want, body)
			continue
		}
		var msg struct{ Error string }
		if err := json.Unmarshal(body, &msg); err != nil || msg.Error == "" {
			t.Errorf("%s %s: body %q is not a JSON error", tc.method, tc.path, body)
		}
	}
	ctx := context.Background()
	cas := repb.NewContentAddressableStorageClient(e.dial(t, tokCIA))
	_, err := cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{{Hash: "nothex", SizeBytes: 1}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("FindMissingBlobs(bad digest) = %v", err)
	}
	bu, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: pd(d), Data: []byte("tampered")}}})
	if err != nil || codes.Code(bu.GetResponses()[0].GetStatus().GetCode()) != codes.InvalidArgument {
		t.Errorf("BatchUpdateBlobs(mismatch) = %v, %v", bu, err)
	}
	ac := repb.NewActionCacheClient(e.dial(t, tokCIA))
	_, err = ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: pd(d), ActionResult: &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "x", Digest: &repb.Digest{Hash: "short"}}}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("UpdateActionResult(bad digest) = %v", err)
	}
	// An AC entry stored over HTTP is served over gRPC and vice versa.
	ar := &repb.ActionResult{ExitCode: 3}
	b, _ := proto.Marshal(ar)
	if resp, body := httpDo(t, "PUT", e.httpURL+"/cache/ac/"+d.Hash.String(), tokCIA, b); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT ac: %d %s", resp.StatusCode, body)
	}
	got, err := ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: pd(d)})
	if err != nil || got.GetExitCode() != 3 {
		t.Errorf("GetActionResult after HTTP PUT = %v, %v", got, err)
	}
}

// TestErrorShapes: each protocol's errors keep the shape its clients
// parse (internal/httperror): {"error": "…"} for the Bazel HTTP cache and
// the Actions cache v1 API, Twirp's {"code", "msg"} for v2, and a 401 asks
// for credentials the way Bazel's HTTP cache understands.
func TestErrorShapes(t *testing.T) {
	e := startEnv(t, cache.Config{})
	tw := "/twirp/github.actions.results.api.v1.CacheService/"
	for _, tc := range []struct {
		method, path, token string
		status              int
		shape               string // "message" or "twirp"
	}{
		{"GET", "/cache/cas/" + blobstore.EmptyDigest.Hash.String(), "", 401, "message"},
		{"PUT", "/cache/ac/" + blobstore.EmptyDigest.Hash.String(), tokDevA, 403, "message"},
		{"GET", "/actions-cache/_apis/artifactcache/cache?keys=a&version=v", "nope", 401, "message"},
		{"POST", tw + "CreateCacheEntry", "", 401, "twirp"},
		{"POST", tw + "CreateCacheEntry", tokDevA, 403, "twirp"},
		{"POST", tw + "NoSuchMethod", tokCIA, 404, "twirp"},
		{"GET", tw + "CreateCacheEntry", tokCIA, 404, "twirp"},
	} {
		resp, body := httpDo(t, tc.method, e.httpURL+tc.path, tc.token, []byte("{}"))
		var m map[string]any
		if resp.StatusCode != tc.status || json.Unmarshal(body, &m) != nil {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
			continue
		}
		switch tc.shape {
		case "message":
			if s, ok := m["error"].(string); !ok || s == "" {
				t.Errorf("%s %s: body %s, want {\"error\": \"…\"}", tc.method, tc.path, body)
			}
		case "twirp":
			if c, ok := m["code"].(string); !ok || c == "" || m["msg"] == nil {
				t.Errorf("%s %s: body %s, want Twirp's {\"code\", \"msg\"}", tc.method, tc.path, body)
			}
		}
		if tc.status == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s %s: 401 without WWW-Authenticate: Basic", tc.method, tc.path)
		}
	}
}
