package apiv1

import (
	"net/http"
	"testing"
)

func TestRouteURL(t *testing.T) {
	for _, tc := range []struct {
		r    Route
		args []string
		want string
	}{
		{RouteListJobs, nil, "/api/v1/jobs"},
		{RouteCancelJob, []string{"job_1"}, "/api/v1/jobs/job_1/cancel"},
		{RouteGetJob, []string{"a/../b?c"}, "/api/v1/jobs/a%2F..%2Fb%3Fc"},
		{RouteRBSSession, []string{"ses_1:heartbeat"}, "/api/v1/rbs/sessions/ses_1:heartbeat"},
	} {
		if got := tc.r.URL(tc.args...); got != tc.want {
			t.Errorf("%s with %q: %s, want %s", tc.r.Path, tc.args, got, tc.want)
		}
	}
	for _, bad := range [][]string{nil, {"a", "b"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("URL with %q arguments did not panic", bad)
				}
			}()
			RouteGetJob.URL(bad...)
		}()
	}
}

// Every route is a pattern net/http accepts, registered once, and says
// what it needs.
func TestRoutesAreWellFormed(t *testing.T) {
	mux := http.NewServeMux()
	seen := map[string]bool{}
	for _, r := range Routes {
		if seen[r.Pattern()] {
			t.Errorf("%s listed twice", r.Pattern())
		}
		seen[r.Pattern()] = true
		mux.Handle(r.Pattern(), http.NotFoundHandler()) // panics on a bad or clashing pattern
		switch r.Auth {
		case AuthAgent:
			if r.Action == "" {
				t.Errorf("%s: an agent route without an action", r.Pattern())
			}
		case AuthNone, AuthJoin:
			if r.Action != "" || r.ClientCert {
				t.Errorf("%s: an open route with an action or a client certificate", r.Pattern())
			}
		case AuthUser:
		default:
			t.Errorf("%s: auth %q", r.Pattern(), r.Auth)
		}
	}
}
