package policy

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/nimbus-build/nimbus/internal/auth"
)

type fixture struct {
	Name  string         `json:"name"`
	Input map[string]any `json:"input"`
	Allow bool           `json:"allow"`
}

// The golden allow/deny decisions. A change to authz.rego that flips one
// of them fails here.
func TestFixtures(t *testing.T) {
	e, err := New(context.Background())
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
	if len(fs) < 40 {
		t.Fatalf("only %d fixtures", len(fs))
	}
	for _, f := range fs {
		got, err := e.Allowed(context.Background(), f.Input)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if got != f.Allow {
			t.Errorf("%s: allow = %v, want %v", f.Name, got, f.Allow)
		}
	}
}

// Every action the policy knows is refused to every role of another org and
// to every role weaker than the action's minimum.
func TestMatrix(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	minRole := policyTable(t, "min_role")
	if len(minRole) < 15 {
		t.Fatalf("min_role has %d actions", len(minRole))
	}
	rank := map[auth.Role]int{}
	for i, r := range auth.Roles {
		rank[r] = i
	}
	for action, min := range minRole {
		for _, role := range auth.Roles {
			for _, org := range []string{"acme", "globex"} {
				p := auth.Principal{Kind: auth.KindUser, Org: "acme", Role: role}
				res := Resource{Org: org, Role: string(role)}
				want := org == "acme" && rank[role] >= rank[auth.Role(min.(string))]
				err := e.Authorize(ctx, p, action, res)
				if got := err == nil; got != want {
					t.Errorf("%s by %s on org %s: allowed=%v, want %v", action, role, org, got, want)
				}
			}
		}
	}
}

// The Go side's list of roles and the policy's ranks agree.
func TestRolesMatchPolicy(t *testing.T) {
	ranks := policyTable(t, "role_rank")
	if len(ranks) != len(auth.Roles) {
		t.Fatalf("policy ranks %d roles, Go knows %d", len(ranks), len(auth.Roles))
	}
	for i, r := range auth.Roles {
		if n, ok := ranks[string(r)].(json.Number); !ok || n.String() != string(rune('1'+i)) {
			t.Errorf("role %s: policy rank %v, want %d", r, ranks[string(r)], i+1)
		}
	}
}

func policyTable(t *testing.T, name string) map[string]any {
	t.Helper()
	e, err := compileQuery(context.Background(), "data.nimbus.authz."+name)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := e.Eval(context.Background())
	if err != nil || len(rs) != 1 {
		t.Fatalf("read %s: %v", name, err)
	}
	return rs[0].Expressions[0].Value.(map[string]any)
}

func BenchmarkAuthorize(b *testing.B) {
	e, err := New(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	p := auth.Principal{Kind: auth.KindAgent, Org: "acme", ID: "agt_1"}
	for b.Loop() {
		if err := e.Authorize(context.Background(), p, "agent.lease", Resource{Org: "acme"}); err != nil {
			b.Fatal(err)
		}
	}
}
