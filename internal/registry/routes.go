package registry

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// Access is what a route needs of its caller; the edge (serve) checks it
// before the handler runs, once.
type Access string

const (
	// AccessToken: the token endpoint, which authenticates the Nimbus
	// credential itself.
	AccessToken Access = "token"
	// AccessLogin: any credential that may use the registry (pull in its
	// org: registry.read).
	AccessLogin Access = "login"
	// AccessPull: pull from the named repository (registry.read, and the
	// repository must be one the org may reach).
	AccessPull Access = "pull"
	// AccessPush: push to the named repository (registry.write, and only
	// the org's own repositories).
	AccessPush Access = "push"
)

type routeKey struct {
	method   string
	endpoint Endpoint
}

// call is a request that passed the edge.
type call struct {
	t      Target
	caller caller
	// repo is the resolved repository of endpoints that name one.
	repo repo
}

type handlerFunc func(w http.ResponseWriter, req *http.Request, c *call) error

type route struct {
	access  Access
	handler handlerFunc
}

// The route table: every method and endpoint the registry serves and the
// access it needs. Nothing else is served; TestRouteTableGolden keeps it
// in testdata/routes.golden and TestRouteMatrix checks each entry against
// every kind of caller.
func (r *Registry) routeTable() map[routeKey]route {
	return map[routeKey]route{
		{"GET", EndpointBase}:  {AccessLogin, r.base},
		{"HEAD", EndpointBase}: {AccessLogin, r.base},

		{"GET", EndpointToken}:  {AccessToken, r.token},
		{"POST", EndpointToken}: {AccessToken, r.token},

		{"GET", EndpointCatalog}: {AccessLogin, r.unsupported("the catalog is not served: list tags of a repository instead")},

		{"GET", EndpointManifest}:    {AccessPull, r.getManifest},
		{"HEAD", EndpointManifest}:   {AccessPull, r.getManifest},
		{"PUT", EndpointManifest}:    {AccessPush, r.putManifest},
		{"DELETE", EndpointManifest}: {AccessPush, r.unsupported("deleting manifests is not supported: the cache evicts what is not used")},

		{"GET", EndpointBlob}:    {AccessPull, r.getBlob},
		{"HEAD", EndpointBlob}:   {AccessPull, r.getBlob},
		{"DELETE", EndpointBlob}: {AccessPush, r.unsupported("deleting blobs is not supported: the cache evicts what is not used")},

		{"POST", EndpointUploads}:  {AccessPush, r.startUpload},
		{"GET", EndpointUpload}:    {AccessPush, r.uploadStatus},
		{"PATCH", EndpointUpload}:  {AccessPush, r.patchUpload},
		{"PUT", EndpointUpload}:    {AccessPush, r.finishUpload},
		{"DELETE", EndpointUpload}: {AccessPush, r.cancelUpload},

		{"GET", EndpointTags}: {AccessPull, r.listTags},

		{"GET", EndpointReferrers}: {AccessPull, r.unsupported("the referrers API is not served: clients fall back to the tag scheme")},
	}
}

// RouteEntry is one entry of the route table, for listings and tests.
type RouteEntry struct {
	Method   string
	Endpoint Endpoint
	Access   Access
}

// Routes lists the route table, sorted.
func (r *Registry) Routes() []RouteEntry {
	var out []RouteEntry
	for k, rt := range r.routes {
		out = append(out, RouteEntry{Method: k.method, Endpoint: k.endpoint, Access: rt.access})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Endpoint != out[j].Endpoint {
			return out[i].Endpoint < out[j].Endpoint
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// serve is the edge: parse the path, find the route, authenticate and
// authorize the caller for the route's access, resolve the repository,
// then run the handler.
func (r *Registry) serve(w http.ResponseWriter, req *http.Request) error {
	t, err := ParsePath(req.URL.Path)
	if err != nil {
		return err
	}
	rt, ok := r.routes[routeKey{req.Method, t.Endpoint}]
	if !ok {
		var allowed []string
		for k := range r.routes {
			if k.endpoint == t.Endpoint {
				allowed = append(allowed, k.method)
			}
		}
		slices.Sort(allowed)
		return ociError(http.StatusMethodNotAllowed, codeUnsupported, "method %s not allowed on %s (allowed: %v)", req.Method, t.Endpoint, allowed)
	}
	c := &call{t: t}
	if rt.access == AccessToken {
		return rt.handler(w, req, c)
	}
	ctx := req.Context()
	scope := ""
	switch rt.access {
	case AccessPull:
		scope = scopeString(t.Name, actionPull)
	case AccessPush:
		scope = scopeString(t.Name, actionPull, actionPush)
	}
	c.caller, err = r.authenticate(ctx, req)
	if err == nil {
		switch rt.access {
		case AccessLogin:
			err = r.mayUse(ctx, c.caller)
		case AccessPull:
			err = r.allow(ctx, c.caller, t.Name, actionPull)
		case AccessPush:
			err = r.allow(ctx, c.caller, t.Name, actionPush)
		}
	}
	if errors.Is(err, auth.ErrUnauthenticated) {
		challenge(w, req, scope)
	}
	if err != nil {
		return err
	}
	if t.Name != "" {
		if c.repo, err = r.resolve(ctx, c.caller.org, t.Name); err != nil {
			return err
		}
		if rt.access == AccessPush && c.repo.Up != nil {
			return fmt.Errorf("%w: %s is pulled through from %s; push to your org's own repositories (%s/…)",
				auth.ErrForbidden, t.Name, c.repo.Up.cfg.Name, c.caller.org)
		}
	}
	return rt.handler(w, req, c)
}

// base answers /v2/: the credential works.
func (r *Registry) base(w http.ResponseWriter, req *http.Request, c *call) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write([]byte("{}"))
	return err
}

func (r *Registry) unsupported(msg string) handlerFunc {
	return func(w http.ResponseWriter, req *http.Request, c *call) error {
		status := http.StatusMethodNotAllowed
		if c.t.Endpoint == EndpointReferrers || c.t.Endpoint == EndpointCatalog {
			status = http.StatusNotFound
		}
		return ociError(status, codeUnsupported, "%s", msg)
	}
}
