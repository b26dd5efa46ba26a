// Package jobcred decides what a job may do with the build cache and
// mints the credential that says so: the token cache.JobEnv hands a job
// (ACTIONS_RUNTIME_TOKEN, NIMBUS_CACHE_TOKEN).
//
// The rules (Decide):
//   - A job never gets more than its submitter may do: the policy is asked
//     about the submitter (the API token that submitted it, or for GitHub
//     jobs the org's GitHub integration, which acts with role ci).
//   - Trust by source: a job whose code comes from a pull request from a
//     fork, from a ref the org marks untrusted, or from a source that could
//     not be established, gets read-only credentials. Bazel action cache
//     writes (cache.write_ac) come only from trusted jobs whose ref is one
//     of the org's action cache refs (by default every branch and tag,
//     never a pull request).
//   - The GitHub Actions cache is scoped by ref the way GitHub scopes it: a
//     job saves under its own ref (a pull request's is refs/pull/N/merge,
//     visible to that pull request only) and restores from its own ref,
//     then its pull request's base branch, then the default branch.
//   - The credential names the lease it was minted for (its fence): the
//     authenticator accepts it only while the job holds that lease, so it
//     dies when the job completes, is cancelled or loses its lease.
package jobcred
