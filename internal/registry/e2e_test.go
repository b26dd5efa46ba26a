package registry_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/registry/registrytest"
)

// The registry as `nimbus up`/`nimbus server` serve it: on the control
// plane's listener, in the build cache's store, with real API tokens and
// a job's scoped credential, the real policy and SQLite. skopeo pulls
// through it, pushes to the org's own repository and pulls that back.
func TestControlPlaneServesTheRegistry(t *testing.T) {
	dist := registrytest.StartDistribution(t, registrytest.DistributionOptions{})
	front := registrytest.StartFront(t, dist)
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) {
		c.RegistryUpstreams = []string{"upstream.test=" + front.URL}
		c.RegistryMirror = "upstream.test"
	})
	host := strings.TrimPrefix(h.URL, "http://")
	img := registrytest.RandomImage(t, 128<<10, 2)
	registrytest.Push(t, front.Host+"/team/app:v1", img, dist.Transport())
	want := registrytest.Digest(t, img)
	sk := registrytest.NewSkopeo(t)
	ctx := context.Background()

	digestOf := func(dir string) string {
		b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		return registrytest.DigestBytes(b)
	}
	// Pull through, with the owner's API token.
	dir := filepath.Join(t.TempDir(), "pulled")
	if out, err := sk.Copy(ctx, "docker://"+host+"/upstream.test/team/app:v1", "dir:"+dir, "nimbus:"+h.OwnerToken); err != nil {
		t.Fatal(err, out)
	}
	if got := digestOf(dir); got != want {
		t.Fatalf("pulled %s, want %s", got, want)
	}
	// Push it to the org's own repository, then pull that back.
	own := host + "/" + h.OrgID + "/app:v1"
	if out, err := sk.CopyTo(ctx, "dir:"+dir, "docker://"+own, "nimbus:"+h.OwnerToken); err != nil {
		t.Fatal(err, out)
	}
	// The push is in the org's audit log, with who pushed what.
	al, err := h.Owner().ListAudit(ctx, apiclient.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range al.Entries {
		if e.Action == "registry.pushed" && e.Target == h.OrgID+"/app:v1" && e.Detail["digest"] == want && strings.HasPrefix(e.Actor, "user:") {
			found = true
		}
	}
	if !found {
		t.Errorf("no registry.pushed entry in the audit log: %+v", al.Entries)
	}
	// A leased job's credential, and NIMBUS_REGISTRY naming this server.
	var en apiv1.Enrolled
	if _, err := h.Client(h.JoinToken("linux")).Do(ctx, "POST", apiv1.PathAgentEnroll, apiv1.Enroll{Name: "a", MaxJobs: 1}, &en); err != nil {
		t.Fatal(err)
	}
	var j apiv1.Job
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/jobs", apiv1.SubmitJob{Argv: []string{"true"}, TimeoutSeconds: 60}, &j); err != nil {
		t.Fatal(err)
	}
	var l apiv1.Lease
	if code, err := h.Client(en.Credential).Do(ctx, "POST", apiv1.PathAgentLease, apiv1.LeaseRequest{WaitSeconds: 5}, &l); err != nil || code != 200 {
		t.Fatalf("lease: %d %v", code, err)
	}
	if l.Env["NIMBUS_REGISTRY"] != host {
		t.Errorf("NIMBUS_REGISTRY %q, want %q", l.Env["NIMBUS_REGISTRY"], host)
	}
	leased := l.Env["NIMBUS_CACHE_TOKEN"]
	if out, err := sk.CopyTo(ctx, "dir:"+dir, "docker://"+host+"/"+h.OrgID+"/built-by-job:1", "nimbus:"+leased); err != nil {
		t.Fatal("a job pushing to its org:", err, out)
	}
	// A credential of the same lease scoped to read only (as a fork's
	// pull request gets).
	jobTok, err := h.CP.Keyring.Sign(auth.Claims{Kind: auth.KindJob, Subject: l.Job.ID, Org: h.OrgID, Scopes: []string{"registry.read"}, Fence: l.Fence}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir2 := filepath.Join(t.TempDir(), "own")
	if out, err := sk.Copy(ctx, "docker://"+own, "dir:"+dir2, "nimbus:"+jobTok); err != nil {
		t.Fatal(err, out)
	}
	if got := digestOf(dir2); got != want {
		t.Fatalf("own repository: %s, want %s", got, want)
	}
	// The job credential cannot push.
	if out, err := sk.CopyTo(ctx, "dir:"+dir, "docker://"+host+"/"+h.OrgID+"/other:v1", "nimbus:"+jobTok); err == nil {
		t.Fatalf("a read-only job credential pushed: %s", out)
	}
	// Paths reach the registry as sent: a trick is a registry error, not
	// the API mux's redirect.
	req, _ := http.NewRequest("GET", h.URL+"/", nil)
	req.URL.Opaque = "/v2/a/../../api/v1/jobs/manifests/x"
	req.SetBasicAuth("nimbus", h.OwnerToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var body struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if resp.StatusCode != 400 || json.Unmarshal(b, &body) != nil || len(body.Errors) != 1 || body.Errors[0].Code != "NAME_INVALID" {
		t.Errorf("path trick: %d %s", resp.StatusCode, b)
	}
}

// An org's private upstream credentials: given once in the registry
// configuration, the password is sealed into the database (never stored
// in the clear), and a later start whose configuration names only the
// username still pulls with it.
func TestPrivateUpstreamCredentialsSealedAcrossRestarts(t *testing.T) {
	const secret = "s3cret-upstream-password"
	priv := registrytest.StartDistribution(t, registrytest.DistributionOptions{User: "bot", Password: secret})
	front := registrytest.StartFront(t, priv)
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) {
		c.RegistryUpstreams = []string{"private.test=" + front.URL}
	})
	ctx := context.Background()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	cfg := filepath.Join(dir, "registry.yaml")
	configure := func(withPassword bool) {
		t.Helper()
		y := "orgs:\n  " + h.OrgID + ":\n    credentials:\n      private.test:\n        username: bot\n"
		if withPassword {
			y += "        password_file: " + pw + "\n"
		}
		if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		h.Config.RegistryConfigFile = cfg
		if err := h.Config.Validate(); err != nil {
			t.Fatal(err)
		}
		h.Restart()
	}
	os.WriteFile(pw, []byte(secret+"\n"), 0o600)
	configure(true)
	host := strings.TrimPrefix(h.URL, "http://")
	sk := registrytest.NewSkopeo(t)
	pull := func(tag string) {
		t.Helper()
		img := registrytest.RandomImage(t, 4096, 1)
		registrytest.Push(t, front.Host+"/secret/app:"+tag, img, priv.Transport(), remote.WithAuth(&authn.Basic{Username: "bot", Password: secret}))
		out := filepath.Join(t.TempDir(), tag)
		if msg, err := sk.Copy(ctx, "docker://"+host+"/private.test/secret/app:"+tag, "dir:"+out, "nimbus:"+h.OwnerToken); err != nil {
			t.Fatal(err, msg)
		}
	}
	pull("1")
	sec, err := h.CP.Store.Keys().GetSecret(ctx, "registry-credential/"+h.OrgID+"/private.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.Sealed) == 0 || strings.Contains(string(sec.Sealed), secret) {
		t.Fatalf("the password is not sealed: %q", sec.Sealed)
	}
	os.Remove(pw)
	configure(false)
	pull("2")
}
