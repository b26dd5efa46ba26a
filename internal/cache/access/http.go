package access

import (
	"fmt"
	"net/http"
)

// HandlerFunc serves a request and returns its error, which the route's
// ErrorWriter answers.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// ErrorWriter answers an error in a protocol's own shape.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, err error)

// Route is one HTTP endpoint of the cache and the action it needs.
type Route struct {
	// Pattern is an http.ServeMux pattern with a method, e.g.
	// "PUT /cache/cas/{hash}" (a GET pattern also serves HEAD), or
	// without one for the answers to requests no other route matches.
	Pattern string
	Action  Action
	Handler HandlerFunc
	// Errors answers the handler's errors and the edge's refusals.
	Errors ErrorWriter
}

// Mux returns a handler that serves routes and nothing else, each behind
// the edge: for an action the policy decides, the request's bearer token
// is authenticated and authorized before the handler runs, and the
// handler finds the Caller in the request's context. A route can only be
// served through its entry, so none can be served without a check.
func (g *Gate) Mux(routes []Route) *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range routes {
		if rt.Errors == nil || rt.Handler == nil {
			panic(fmt.Sprintf("cache route %q: no handler or error writer", rt.Pattern))
		}
		mux.Handle(rt.Pattern, g.edge(rt))
	}
	return mux
}

func (g *Gate) edge(rt Route) http.Handler {
	if !rt.Action.Decided() {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := rt.Handler(w, r); err != nil {
				rt.Errors(w, r, err)
			}
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, err := g.Admit(r.Context(), RequestToken(r), rt.Action)
		if err == nil {
			r = r.WithContext(ctx)
			err = rt.Handler(w, r)
		}
		if err != nil {
			rt.Errors(w, r, err)
		}
	})
}
