package apiv1

import (
	"strings"
	"time"
)

// EgressPolicy is a job's network policy, decided by the control plane and
// enforced by the agent in the sandbox's data plane.
type EgressPolicy struct {
	// Mode: offline (the platform's endpoints only), allow-list (those and
	// Allow) or audit (everything but the always-denied ranges, recording
	// what the allow-list would have refused).
	Mode string `json:"mode"`
	// Allow holds name patterns (example.com, *.example.com) and CIDRs or
	// addresses. Nothing here opens the always-denied ranges (link-local
	// and metadata, private, CGNAT, unique local, the host itself).
	Allow []string `json:"allow,omitempty"`
}

// CacheAccess is how a leased job reaches the build caches.
type CacheAccess struct {
	// Token is the job-scoped cache credential.
	Token string `json:"token"`
	// GRPC is host:port of the cache's gRPC API as the agent reaches it;
	// empty when the control plane serves none.
	GRPC string `json:"grpc,omitempty"`
	// NoUploadResults: the credential may not write the Bazel action
	// cache, so Bazel is told not to upload results (CacheEnv).
	NoUploadResults bool `json:"no_upload_results,omitempty"`
}

// PlatformPaths are the control plane's HTTP path prefixes a job may reach
// through its sandbox's platform address (the caches); nothing else of
// the control plane is reachable from a job.
var PlatformPaths = []string{
	"/cache/",         // Bazel HTTP cache
	"/actions-cache/", // GitHub Actions cache v1, and v2's signed blob URLs
	"/twirp/github.actions.results.api.v1.CacheService/", // Actions cache v2
	"/v2/", // the registry cache (OCI Distribution API and its token endpoint)
}

// EgressReport is what a job did on the network, sent by the agent with
// the job's completion and stored with the job.
type EgressReport struct {
	Mode string `json:"mode"`
	// Allow is the allow-list that was in force.
	Allow []string `json:"allow,omitempty"`
	// Names asked for, in the order first asked.
	Names []EgressName `json:"names,omitempty"`
	// NamesDropped counts names not kept (past the report's bound).
	NamesDropped int `json:"names_dropped,omitempty"`
	// Allowed are connections the policy allowed.
	Allowed []EgressConn `json:"allowed,omitempty"`
	// Refused are connections refused: always-denied ranges, other
	// resolvers, and (outside audit mode) everything not allowed.
	Refused []EgressConn `json:"refused,omitempty"`
	// Unlisted are connections audit mode let through that the allow-list
	// would have refused.
	Unlisted []EgressConn `json:"unlisted,omitempty"`
	// BytesOut and BytesIn count what crossed the sandbox's link.
	BytesOut uint64 `json:"bytes_out"`
	BytesIn  uint64 `json:"bytes_in"`
}

// EgressName is one (name, type) a job asked its resolver for.
type EgressName struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Verdict: allowed (answered), denied (NXDOMAIN, never forwarded),
	// unlisted (audit mode: answered, but not on the allow-list), refused
	// (a query type the resolver does not forward: answered empty).
	Verdict string   `json:"verdict"`
	Count   int      `json:"count"`
	Answers []string `json:"answers,omitempty"`
	// Blocked are addresses removed from answers (always-denied ranges:
	// DNS rebinding).
	Blocked []string `json:"blocked,omitempty"`
}

// Verdicts of an EgressName.
const (
	VerdictAllowed  = "allowed"
	VerdictDenied   = "denied"
	VerdictUnlisted = "unlisted"
	VerdictRefused  = "refused"
)

// EgressConn is a destination a job opened connections to, or tried.
type EgressConn struct {
	Addr  string `json:"addr"`
	Proto string `json:"proto"`
	Port  uint16 `json:"port,omitempty"`
	// Count is how many new connections (for UDP and ICMP, new flows).
	Count uint64 `json:"count"`
}

// Limits on egress documents.
const (
	MaxEgressAllow = 4096
)

// CacheEnv is the environment that makes a job's actions/cache (v1 and v2
// protocols) and Bazel use the platform's caches without setup. baseURL
// is where the job reaches the control plane's HTTP endpoints (e.g.
// "http://nimbus.internal"), grpcURL the cache's gRPC API as Bazel takes
// it (e.g. "grpc://nimbus.internal:9092"; empty to point Bazel at the HTTP
// cache), token the job-scoped cache token.
//
// Bazel reads no environment variable for its cache, so NIMBUS_BAZEL_FLAGS
// carries the flags; the job's setup appends them to a bazelrc, e.g.
// `echo "build $NIMBUS_BAZEL_FLAGS" >> ~/.bazelrc`.
func CacheEnv(baseURL, grpcURL, token string, uploadResults bool) map[string]string {
	base := strings.TrimSuffix(baseURL, "/")
	remote := grpcURL
	if remote == "" {
		remote = base + "/cache"
	}
	flags := "--remote_cache=" + remote + " --remote_header=Authorization=Bearer " + token
	if !uploadResults {
		// Bazel refuses to start against a cache that says it takes no
		// results, unless told not to upload them.
		flags += " --remote_upload_local_results=false"
	}
	return map[string]string{
		// actions/cache: v1 reads ACTIONS_CACHE_URL, v2 ACTIONS_RESULTS_URL
		// (and builds the Twirp path from its host).
		"ACTIONS_CACHE_URL":        base + "/actions-cache/",
		"ACTIONS_RESULTS_URL":      base + "/actions-cache/",
		"ACTIONS_RUNTIME_TOKEN":    token,
		"ACTIONS_CACHE_SERVICE_V2": "true",
		"NIMBUS_CACHE_URL":         remote,
		"NIMBUS_CACHE_TOKEN":       token,
		"NIMBUS_BAZEL_FLAGS":       flags,
		// The registry cache, as image references name it (host[:port],
		// no scheme): docker login $NIMBUS_REGISTRY -u nimbus with the
		// token, then pull $NIMBUS_REGISTRY/docker.io/library/alpine.
		"NIMBUS_REGISTRY": registryHost(base),
	}
}

// registryHost is the host[:port] of a base URL.
func registryHost(base string) string {
	rest := base
	if _, after, ok := strings.Cut(base, "://"); ok {
		rest = after
	}
	host, _, _ := strings.Cut(rest, "/")
	return host
}

// JobEgress is a job's network as GET /api/v1/jobs/{id} shows it: the
// policy it was (last) leased with and, once it finished, its report.
type JobEgress struct {
	Policy EgressPolicy  `json:"policy"`
	Report *EgressReport `json:"report,omitempty"`
}

// EgressSuggestion answers GET /api/v1/egress/suggest?label=L&days=N: an
// allow-list proposed from the reports of the org's jobs labelled L.
type EgressSuggestion struct {
	Label string                 `json:"label,omitempty"`
	Since time.Time              `json:"since"`
	Jobs  int                    `json:"jobs"`
	Allow []EgressSuggestedEntry `json:"allow"`
}

// EgressSuggestedEntry is one proposed allow-list entry: how many of the
// jobs needed it, how often, and whether their policy allowed it already.
type EgressSuggestedEntry struct {
	Entry  string `json:"entry"`
	Jobs   int    `json:"jobs"`
	Count  int    `json:"count"`
	Listed bool   `json:"listed,omitempty"`
}
