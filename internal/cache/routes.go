package cache

import (
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/actionscache"
	"github.com/nimbus-build/nimbus/internal/cache/httperr"
	"github.com/nimbus-build/nimbus/internal/httperror"
)

// The route table: every gRPC method and HTTP route the cache serves, and
// the action the edge authorizes before its handler runs. Nothing is
// served that is not listed here: an HTTP route exists only through its
// entry, and a gRPC method without one is refused by the interceptor (and
// fails TestRouteTableCoversEverything). TestRouteMatrix checks every
// entry against every kind of caller with the real policy.

// grpcMethods is the gRPC half of the table.
func grpcMethods() access.Methods {
	return access.Methods{
		repb.Capabilities_GetCapabilities_FullMethodName:                   access.Read,
		repb.ContentAddressableStorage_FindMissingBlobs_FullMethodName:     access.Read,
		repb.ContentAddressableStorage_BatchReadBlobs_FullMethodName:       access.Read,
		repb.ContentAddressableStorage_GetTree_FullMethodName:              access.Read,
		repb.ContentAddressableStorage_SplitBlob_FullMethodName:            access.Read,
		repb.ContentAddressableStorage_GetChunkMapping_FullMethodName:      access.Read,
		repb.ContentAddressableStorage_BatchUpdateBlobs_FullMethodName:     access.Write,
		repb.ContentAddressableStorage_SpliceBlob_FullMethodName:           access.Write,
		repb.ContentAddressableStorage_RegisterChunkMapping_FullMethodName: access.Write,
		repb.ActionCache_GetActionResult_FullMethodName:                    access.Read,
		repb.ActionCache_UpdateActionResult_FullMethodName:                 access.WriteAC,
		"/google.bytestream.ByteStream/Read":                               access.Read,
		"/google.bytestream.ByteStream/QueryWriteStatus":                   access.Read,
		"/google.bytestream.ByteStream/Write":                              access.Write,
		healthpb.Health_Check_FullMethodName:                               access.Public,
		healthpb.Health_Watch_FullMethodName:                               access.Public,
		healthpb.Health_List_FullMethodName:                                access.Public,
	}
}

// httpRoutes is the HTTP half of the table.
func (s *Service) httpRoutes() []access.Route {
	h, a := s.http, s.gha
	const (
		bz = BazelHTTPPrefix
		v1 = actionscache.V1Prefix
		tw = actionscache.TwirpPrefix
		bl = actionscache.BlobsPrefix
	)
	return []access.Route{
		// Bazel's HTTP cache.
		{Pattern: "GET " + bz + "{kind}/{hash}", Action: access.Read, Handler: h.Get, Shape: httperror.Message, Classify: httperr.Classify},
		{Pattern: "PUT " + bz + "cas/{hash}", Action: access.Write, Handler: h.PutCAS, Shape: httperror.Message, Classify: httperr.Classify},
		{Pattern: "PUT " + bz + "ac/{hash}", Action: access.WriteAC, Handler: h.PutAC, Shape: httperror.Message, Classify: httperr.Classify},
		{Pattern: bz + "{kind}/{hash}", Action: access.Public, Handler: h.NoMethod, Shape: httperror.Message, Classify: httperr.Classify},
		{Pattern: bz, Action: access.Public, Handler: h.NoRoute, Shape: httperror.Message, Classify: httperr.Classify},

		// Actions cache, v1 REST.
		{Pattern: "GET " + v1 + "cache", Action: access.Read, Handler: a.V1GetCache, Shape: httperror.Message, Classify: httperr.Classify},
		{Pattern: "GET " + v1 + "caches", Action: access.Read, Handler: a.V1ListCaches, Shape: httperror.Message, Classify: httperr.Classify},
		{Pattern: "POST " + v1 + "caches", Action: access.Write, Handler: a.V1Reserve, Shape: httperror.Message, Classify: httperr.Classify},
		{Pattern: "PATCH " + v1 + "caches/{id}", Action: access.Write, Handler: a.V1Upload, Shape: httperror.Message, Classify: httperr.Classify},
		{Pattern: "POST " + v1 + "caches/{id}", Action: access.Write, Handler: a.V1Commit, Shape: httperror.Message, Classify: httperr.Classify},
		// Actions cache, v2 Twirp.
		{Pattern: "POST " + tw + "GetCacheEntryDownloadURL", Action: access.Read, Handler: a.GetCacheEntryDownloadURL, Shape: httperror.Twirp, Classify: httperr.ClassifyTwirp},
		{Pattern: "POST " + tw + "CreateCacheEntry", Action: access.Write, Handler: a.CreateCacheEntry, Shape: httperror.Twirp, Classify: httperr.ClassifyTwirp},
		{Pattern: "POST " + tw + "FinalizeCacheEntryUpload", Action: access.Write, Handler: a.FinalizeCacheEntryUpload, Shape: httperror.Twirp, Classify: httperr.ClassifyTwirp},
		{Pattern: tw, Action: access.Public, Handler: a.TwirpNoRoute, Shape: httperror.Twirp, Classify: httperr.ClassifyTwirp},
		// The signed blob URLs both versions hand out.
		{Pattern: "PUT " + bl + "up/{id}", Action: access.Signed, Handler: a.BlobUpload, Shape: httperror.Message, Classify: httperr.Classify},
		{Pattern: "GET " + bl + "down/{id}", Action: access.Signed, Handler: a.BlobDownload, Shape: httperror.Message, Classify: httperr.Classify},
		{Pattern: actionscache.Prefix, Action: access.Public, Handler: a.NoRoute, Shape: httperror.Message, Classify: httperr.Classify},
	}
}

// Endpoint is one entry of the route table, for listings and tests.
type Endpoint struct {
	// Protocol is "grpc" or "http".
	Protocol string
	// Name is the gRPC method's full name or the HTTP route's pattern.
	Name   string
	Action access.Action
}

// Endpoints lists the route table.
func (s *Service) Endpoints() []Endpoint {
	var out []Endpoint
	for m, a := range grpcMethods() {
		out = append(out, Endpoint{Protocol: "grpc", Name: m, Action: a})
	}
	for _, r := range s.httpRoutes() {
		out = append(out, Endpoint{Protocol: "http", Name: r.Pattern, Action: r.Action})
	}
	return out
}
