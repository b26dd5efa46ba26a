package access

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/httperror"
)

// HandlerFunc serves a request and returns its error, which
// internal/httperror answers in the route's shape.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Route is one HTTP endpoint of the cache and the action it needs.
type Route struct {
	// Pattern is an http.ServeMux pattern with a method, e.g.
	// "PUT /cache/cas/{hash}" (a GET pattern also serves HEAD), or
	// without one for the answers to requests no other route matches.
	Pattern string
	Action  Action
	Handler HandlerFunc
	// Shape and Classify answer the handler's errors and the edge's
	// refusals (internal/httperror): the body's shape the protocol's
	// clients read, and what each error of the cache means to them.
	Shape    httperror.Shape
	Classify httperror.Classify
}

// Mux returns a handler that serves routes and nothing else, each behind
// the edge: for an action the policy decides, the request's bearer token
// is authenticated and authorized before the handler runs, and the
// handler finds the Caller in the request's context. A route can only be
// served through its entry, so none can be served without a check.
func (g *Gate) Mux(routes []Route, log *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range routes {
		if rt.Handler == nil || rt.Classify == nil {
			panic(fmt.Sprintf("cache route %q: no handler or classification", rt.Pattern))
		}
		mux.Handle(rt.Pattern, httperror.Wrap(log, rt.Shape, rt.Classify, g.edge(rt)))
	}
	return mux
}

func (g *Gate) edge(rt Route) httperror.Handler {
	if !rt.Action.Decided() {
		return httperror.Handler(rt.Handler)
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx, err := g.Admit(r.Context(), RequestToken(r), rt.Action)
		if errors.Is(err, auth.ErrUnauthenticated) {
			// Bazel's HTTP cache sends credentials when asked to.
			w.Header().Set("WWW-Authenticate", `Bearer realm="nimbus-cache", Basic realm="nimbus-cache"`)
		}
		if err != nil {
			return err
		}
		return rt.Handler(w, r.WithContext(ctx))
	}
}
