// Package github speaks to GitHub for Nimbus's CI runners.
//
// Inbound, it authenticates and parses webhook deliveries: VerifySignature
// checks X-Hub-Signature-256 against one or more webhook secrets (several
// during a rotation), DeliveryFromHeaders reads the X-GitHub-* headers, and
// ParseWorkflowJob and ParsePing decode and validate the payloads Nimbus acts
// on. GitHub signs no timestamp, so replay protection belongs to the caller:
// the delivery id plus idempotent job keys.
//
// Outbound, App is a GitHub App client: it signs App JWTs (RS256) with the
// App's private key, exchanges them for installation tokens (cached per
// installation, refreshed before expiry, one request for concurrent callers)
// and uses them to create just-in-time (JIT) configurations for ephemeral
// runners and to remove runners that will never run. It never requests a
// runner registration token: such a token lets job code register persistent
// runners.
//
// Errors from the API are *APIError values; Retryable tells transient failures
// from permanent ones. The package reads no environment and keeps no global
// state; the HTTP edge (body limits, status codes) belongs to the caller.
//
// The githubtest package holds a working emulator of the parts of the API used
// here, and helpers to sign and deliver webhooks in tests.
package github
