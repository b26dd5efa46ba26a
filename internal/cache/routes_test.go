package cache_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// TestRouteTableCoversEverything: every method the cache's gRPC server
// serves has an entry in the route table, and every entry names a method
// it serves. A service registered without entries fails here (and its
// methods are refused at the edge).
func TestRouteTableCoversEverything(t *testing.T) {
	e := startEnv(t, cache.Config{})
	table := map[string]access.Action{}
	for _, ep := range e.svc.Endpoints() {
		if ep.Protocol == "grpc" {
			table[ep.Name] = ep.Action
		}
	}
	g := e.svc.NewGRPCServer()
	defer g.Stop()
	served := map[string]bool{}
	for svc, info := range g.GetServiceInfo() {
		for _, m := range info.Methods {
			name := "/" + svc + "/" + m.Name
			served[name] = true
			if _, ok := table[name]; !ok {
				t.Errorf("gRPC method %s has no entry in the route table (routes.go)", name)
			}
		}
	}
	for name := range table {
		if !served[name] {
			t.Errorf("route table entry %s names no method the server serves", name)
		}
	}
}

// TestRouteTableGolden keeps the route table in a golden file, so that a
// new route, or an action changed from write to read, shows in review
// (go test ./internal/cache -run RouteTableGolden -update rewrites it).
func TestRouteTableGolden(t *testing.T) {
	e := startEnv(t, cache.Config{})
	var lines []string
	for _, ep := range e.svc.Endpoints() {
		lines = append(lines, fmt.Sprintf("%-5s %-80s %s", ep.Protocol, ep.Name, ep.Action))
	}
	slices.Sort(lines)
	got := strings.Join(lines, "\n") + "\n"
	path := filepath.Join("testdata", "routes.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("route table differs from %s (run with -update if intended):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// matrixCaller is one kind of caller of the route matrix.
type matrixCaller struct {
	name  string
	token string
	p     *auth.Principal // nil: no valid credential
}

func matrixCallers(e *env) []matrixCaller {
	var out []matrixCaller
	add := func(name string, p auth.Principal) {
		tok := "matrix-" + name
		e.tokens.Add(tok, p)
		out = append(out, matrixCaller{name: name, token: tok, p: &p})
	}
	for _, r := range auth.Roles {
		add(string(r), auth.Principal{Kind: auth.KindUser, Org: "org-a", ID: "tok-" + string(r), Role: r})
	}
	add("job-read", auth.Principal{Kind: auth.KindJob, Org: "org-a", ID: "job-r", Scopes: []string{"cache.read"}})
	add("job-write", auth.Principal{Kind: auth.KindJob, Org: "org-a", ID: "job-w", Scopes: []string{"cache.read", "cache.write"}})
	add("job-noscope", auth.Principal{Kind: auth.KindJob, Org: "org-a", ID: "job-n"})
	add("agent", auth.Principal{Kind: auth.KindAgent, Org: "org-a", ID: "agt"})
	add("ci-other-org", auth.Principal{Kind: auth.KindUser, Org: "org-b", ID: "tok-b", Role: auth.RoleCI})
	out = append(out, matrixCaller{name: "unknown-token", token: "no-such-token"}, matrixCaller{name: "no-token"})
	return out
}

// outcome is what the edge did with a request: let it through to the
// handler, or refuse it.
type outcome string

const (
	passed          outcome = "passed"
	unauthenticated outcome = "unauthenticated"
	forbidden       outcome = "forbidden"
	signatureNeeded outcome = "signature-needed"
)

// TestRouteMatrix is the cache's policy proof: every entry of the route
// table, over the protocol it is served on, against every kind of caller,
// gets the outcome the real policy decides for the entry's action.
func TestRouteMatrix(t *testing.T) {
	e := startEnv(t, cache.Config{})
	ctx := context.Background()
	pol, err := policy.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	authz := policy.OrgAuthorizer{Engine: pol}
	callers := matrixCallers(e)
	conns := map[string]*grpc.ClientConn{}
	for _, c := range callers {
		conns[c.name] = e.dial(t, c.token)
	}
	for _, ep := range e.svc.Endpoints() {
		for _, c := range callers {
			var want outcome
			switch {
			case ep.Action == access.Public:
				want = passed
			case ep.Action == access.Signed:
				want = signatureNeeded // a bearer token grants nothing
			case c.p == nil:
				want = unauthenticated
			case authz.Authorize(ctx, *c.p, string(ep.Action), c.p.Org) == nil:
				want = passed
			default:
				want = forbidden
			}
			var got outcome
			if ep.Protocol == "grpc" {
				got = callGRPC(t, conns[c.name], ep.Name)
			} else {
				got = callHTTP(t, e, ep.Name, c.token)
			}
			if got != want {
				t.Errorf("%s %s as %s: %s, want %s", ep.Protocol, ep.Name, c.name, got, want)
			}
		}
	}
}

// callGRPC calls method with an empty request message and classifies the
// answer.
func callGRPC(t *testing.T, conn *grpc.ClientConn, method string) outcome {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
	if err == nil {
		// SendMsg fails with io.EOF once the server has ended the call
		// (as the edge does when it refuses it): the status comes from
		// RecvMsg.
		s.SendMsg(&emptypb.Empty{})
		s.CloseSend()
		err = s.RecvMsg(&emptypb.Empty{})
	}
	switch status.Code(err) {
	case codes.Unauthenticated:
		return unauthenticated
	case codes.PermissionDenied:
		return forbidden
	}
	return passed
}

// callHTTP makes a request matching pattern with an empty body and
// classifies the answer.
func callHTTP(t *testing.T, e *env, pattern, token string) outcome {
	t.Helper()
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "DELETE", pattern // a route for any method
	}
	path = strings.NewReplacer("{kind}", "cas", "{hash}", strings.Repeat("a", 64), "{id}", "1").Replace(path)
	if strings.HasSuffix(path, "/") {
		path += "nothing-here"
	}
	resp, body := httpDo(t, method, e.httpURL+path+"?keys=k&version=v", token, nil)
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return unauthenticated
	case resp.StatusCode == http.StatusForbidden:
		return forbidden
	case resp.StatusCode == http.StatusNotFound && strings.Contains(string(body), "URL"):
		return signatureNeeded
	case resp.StatusCode >= 500:
		t.Errorf("%s %s: %d %s", method, path, resp.StatusCode, body)
	}
	return passed
}
