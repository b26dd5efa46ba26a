package registry

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/policy"
)

// FuzzOrgIsolation fuzzes org isolation (the threat model's "org
// isolation not fuzzed"): a program of pushes, mounts and pulls by two
// orgs, under names that include each other's prefixes, runs against a
// registry where both act and one where only acme acts. Every answer acme
// gets, and acme's view of every name, tag and blob at the end, must be
// the same in both: nothing globex does can change, or reveal, anything
// of acme's.
func FuzzOrgIsolation(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0x10, 1, 0, 0x11, 1, 0, 2, 0, 0, 6, 0, 0})
	f.Add([]byte{0x10, 1, 1, 0x11, 1, 1, 7, 1, 1, 0x17, 0, 0, 4, 1, 0, 3, 1, 1})
	f.Add([]byte{0x10, 2, 2, 0x10, 3, 3, 0x11, 2, 3, 0, 3, 3, 1, 3, 2, 2, 3, 2, 0x12, 0, 2})
	pol, err := policy.New(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		both, acmeOnly := isolationRegistry(t, pol), isolationRegistry(t, pol)
		for i := 0; i+2 < len(prog) && i < 90; i += 3 {
			req := isolationOp(prog[i], prog[i+1], prog[i+2])
			got := req.send(both)
			if req.token != "acme-ci" {
				continue
			}
			if want := req.send(acmeOnly); got != want {
				t.Fatalf("op %d (%s %s): with globex acting acme gets %s, without %s", i/3, req.method, req.path, got, want)
			}
		}
		// acme's whole view.
		for _, name := range isolationNames {
			for _, path := range []string{"/manifests/" + isolationTags[0], "/manifests/" + isolationTags[1], "/tags/list"} {
				r := isolationReq{method: "GET", path: "/v2/" + name + path, token: "acme-ci"}
				if got, want := r.send(both), r.send(acmeOnly); got != want {
					t.Fatalf("acme's view of %s: with globex %s, without %s", r.path, got, want)
				}
			}
			for x := range isolationBlobs {
				r := isolationReq{method: "GET", path: "/v2/" + name + "/blobs/" + digestOf(isolationBlobs[x]).String(), token: "acme-ci"}
				if got, want := r.send(both), r.send(acmeOnly); got != want {
					t.Fatalf("acme's view of %s: with globex %s, without %s", r.path, got, want)
				}
			}
		}
	})
}

// Names that overlap: each org's own prefix, globex's name alias, names
// of nobody's.
var isolationNames = []string{orgAcme + "/app", orgGlobex + "/app", "globex/app", orgAcme + "/other", "app"}

var isolationTags = []string{"v1", "latest", "x"}

var isolationBlobs = [][]byte{[]byte("config one"), []byte("layer two"), []byte("blob three"), {}}

func isolationManifest(x, y byte) []byte {
	c, l := isolationBlobs[int(x)%len(isolationBlobs)], isolationBlobs[int(y)%len(isolationBlobs)]
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		MediaTypeOCIManifest, digestOf(c).String(), len(c), digestOf(l).String(), len(l)))
}

type isolationReq struct {
	method, path, token string
	body                []byte
	ctype               string
}

// isolationOp decodes one operation: op's low nibble says what, its bit
// 4 who (acme or globex), x and y pick names, tags and contents.
func isolationOp(op, x, y byte) isolationReq {
	token := "acme-ci"
	if op&0x10 != 0 {
		token = "globex-ci"
	}
	name := isolationNames[int(x)%len(isolationNames)]
	tag := isolationTags[int(y)%len(isolationTags)]
	blob := isolationBlobs[int(y)%len(isolationBlobs)]
	r := isolationReq{token: token}
	switch op & 0x0f % 8 {
	case 0:
		r.method, r.path, r.body = "POST", "/v2/"+name+"/blobs/uploads/?digest="+digestOf(blob).String(), blob
	case 1:
		r.method, r.path, r.body, r.ctype = "PUT", "/v2/"+name+"/manifests/"+tag, isolationManifest(x, y), MediaTypeOCIManifest
	case 2:
		r.method, r.path = "GET", "/v2/"+name+"/manifests/"+tag
	case 3:
		r.method, r.path = "GET", "/v2/"+name+"/manifests/"+digestOf(isolationManifest(x, y)).String()
	case 4:
		r.method, r.path = "GET", "/v2/"+name+"/blobs/"+digestOf(blob).String()
	case 5:
		r.method, r.path = "HEAD", "/v2/"+name+"/blobs/"+digestOf(blob).String()
	case 6:
		r.method, r.path = "GET", "/v2/"+name+"/tags/list"
	case 7:
		from := isolationNames[int(y)%len(isolationNames)]
		r.method, r.path = "POST", "/v2/"+name+"/blobs/uploads/?mount="+digestOf(blob).String()+"&from="+from
	}
	return r
}

// send serves the request and summarizes the answer: status, error code
// or digest, and the body of successful GETs (upload ids, which are
// random, are left out).
func (q isolationReq) send(reg *Registry) string {
	req := httptest.NewRequest(q.method, "http://registry.test"+q.path, bytes.NewReader(q.body))
	req.SetBasicAuth("nimbus", q.token)
	if q.ctype != "" {
		req.Header.Set("Content-Type", q.ctype)
	}
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, req)
	out := fmt.Sprintf("%d %s", rec.Code, rec.Header().Get("Docker-Content-Digest"))
	switch {
	case rec.Code >= 400 && q.method != "HEAD":
		out += " " + strings.TrimSpace(rec.Body.String())
	case rec.Code == http.StatusOK && q.method == "GET":
		out += " " + rec.Body.String()
	}
	return out
}

func isolationRegistry(t *testing.T, pol *policy.Engine) *Registry {
	reg, err := New(Options{
		Store: blobstore.NewVerifying(blobstore.NewMemory()), Authn: mapAuthn{}, Authz: policy.OrgAuthorizer{Engine: pol},
		OrgName: func(ctx context.Context, id string) (string, error) {
			return map[string]string{orgAcme: "Acme Inc", orgGlobex: "globex"}[id], nil
		},
		TokenKey: []byte(strings.Repeat("k", 32)), TempDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}
