package cache

import (
	"strings"

	"github.com/nimbus-build/nimbus/internal/cache/actionscache"
)

// JobEnv returns the environment that makes a job's actions/cache (v2
// protocol) and Bazel use this cache without setup. baseURL is where the
// control plane serves Handler (e.g. "https://nimbus.example.com"), grpcURL
// where it serves NewGRPCServer (e.g. "grpcs://nimbus.example.com:9443";
// empty to point Bazel at the HTTP cache), token the job-scoped cache token.
//
// Bazel reads no environment variable for its cache, so NIMBUS_BAZEL_FLAGS
// carries the flags; the job's setup appends them to a bazelrc, e.g.
// `echo "build $NIMBUS_BAZEL_FLAGS" >> ~/.bazelrc`.
func JobEnv(baseURL, grpcURL, token string) map[string]string {
	base := strings.TrimSuffix(baseURL, "/")
	remote := grpcURL
	if remote == "" {
		remote = base + strings.TrimSuffix(BazelHTTPPrefix, "/")
	}
	return map[string]string{
		// actions/cache: v1 reads ACTIONS_CACHE_URL, v2 ACTIONS_RESULTS_URL
		// (and builds the Twirp path from its host).
		"ACTIONS_CACHE_URL":        base + actionscache.Prefix,
		"ACTIONS_RESULTS_URL":      base + actionscache.Prefix,
		"ACTIONS_RUNTIME_TOKEN":    token,
		"ACTIONS_CACHE_SERVICE_V2": "true",
		"NIMBUS_CACHE_URL":         remote,
		"NIMBUS_CACHE_TOKEN":       token,
		"NIMBUS_BAZEL_FLAGS":       "--remote_cache=" + remote + " --remote_header=Authorization=Bearer " + token,
	}
}
