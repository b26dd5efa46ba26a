package policy

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// principalOf turns a fixture's subject back into a principal.
func principalOf(t *testing.T, in map[string]any) (auth.Principal, string, Resource, bool) {
	sub, _ := in["subject"].(map[string]any)
	res, _ := in["resource"].(map[string]any)
	action, _ := in["action"].(string)
	if sub == nil || res == nil {
		return auth.Principal{}, "", Resource{}, false
	}
	p := auth.Principal{Kind: auth.Kind(sub["kind"].(string)), Org: sub["org"].(string), Role: auth.Role(sub["role"].(string))}
	for _, s := range sub["scopes"].([]any) {
		p.Scopes = append(p.Scopes, s.(string))
	}
	return p, action, Resource{Org: res["org"].(string), Role: res["role"].(string)}, true
}

// TestFastPathAgrees: the decision table the Engine derives for the
// cache's hot actions answers every golden fixture, and every random
// request it covers, exactly as full evaluation of the policy does.
func TestFastPathAgrees(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("testdata/fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	var fs []fixture
	if err := json.Unmarshal(b, &fs); err != nil {
		t.Fatal(err)
	}
	covered := 0
	for _, f := range fs {
		p, action, r, ok := principalOf(t, f.Input)
		if !ok || !slices.Contains(HotActions, action) {
			continue
		}
		fast, ok := e.fast(p, action, r)
		if !ok {
			t.Errorf("%s: a hot action's fixture is not covered by the table", f.Name)
			continue
		}
		covered++
		if fast != f.Allow {
			t.Errorf("%s: fast path says %v, golden %v", f.Name, fast, f.Allow)
		}
	}
	if covered < 15 {
		t.Errorf("only %d fixtures of hot actions", covered)
	}
	rapid.Check(t, func(rt *rapid.T) {
		roles := []auth.Role{"", "superuser"}
		roles = append(roles, auth.Roles...)
		p := auth.Principal{
			Kind:   rapid.SampledFrom([]auth.Kind{auth.KindUser, auth.KindAgent, auth.KindJob, "robot"}).Draw(rt, "kind"),
			Org:    rapid.SampledFrom([]string{"", "a", "b"}).Draw(rt, "org"),
			Role:   rapid.SampledFrom(roles).Draw(rt, "role"),
			Scopes: rapid.SliceOfDistinct(rapid.SampledFrom([]string{"cache.read", "cache.write", "cache.write_ac", "cache.ref=refs/heads/main", "jobs.read", ""}), rapid.ID).Draw(rt, "scopes"),
		}
		action := rapid.SampledFrom(append([]string{"jobs.read", "cache.trust.write"}, HotActions...)).Draw(rt, "action")
		r := Resource{Org: rapid.SampledFrom([]string{"", "a", "b"}).Draw(rt, "resource org")}
		full, err := e.Allowed(ctx, Input(p, action, r))
		if err != nil {
			rt.Fatal(err)
		}
		if fast, ok := e.fast(p, action, r); ok && fast != full {
			rt.Fatalf("%+v %s on %+v: fast %v, full %v", p, action, r, fast, full)
		}
	})
}

// BenchmarkAuthorizeCacheRead: a hot action from the table, against full
// evaluation of the policy.
func BenchmarkAuthorizeCacheRead(b *testing.B) {
	ctx := context.Background()
	e, err := New(ctx)
	if err != nil {
		b.Fatal(err)
	}
	p := auth.Principal{Kind: auth.KindUser, Org: "a", Role: auth.RoleCI}
	b.Run("table", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := e.Authorize(ctx, p, "cache.read", Resource{Org: "a"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rego", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := e.Allowed(ctx, Input(p, "cache.read", Resource{Org: "a"})); err != nil || !ok {
				b.Fatal(err)
			}
		}
	})
}
