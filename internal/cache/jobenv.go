package cache

import "github.com/nimbus-build/nimbus/internal/apiv1"

// JobEnv returns the environment that makes a job's actions/cache and
// Bazel use this cache without setup; see apiv1.CacheEnv, which agents
// also use to point a sandboxed job at its platform address. token is the
// job's cache credential (internal/cache/jobcred) and uploadResults
// whether it may write the Bazel action cache.
func JobEnv(baseURL, grpcURL, token string, uploadResults bool) map[string]string {
	return apiv1.CacheEnv(baseURL, grpcURL, token, uploadResults)
}
