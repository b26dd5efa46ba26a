// Package sessionapi is the wire of remote Bazel's sessions API, both
// ends: Handler serves it over HTTP in front of a Broker (the control
// plane's internal/sessions, the only broker), and Client is the proxy's
// rbs.SessionProvider calling it.
//
// The proxy authenticates with the user's credentials (a bearer token);
// the user is taken from them, never from the request. GetServer carries a
// certificate signing request for a key the proxy generated; the control
// plane answers with a short-lived certificate for the user's identity,
// the CA and the agent's identity, which is all the proxy needs for the
// mTLS tunnel to the agent.
//
//	POST /api/v1/rbs/sessions:get              getServerRequest -> getServerResponse
//	POST /api/v1/rbs/sessions/{id}:heartbeat   -> 204
//	POST /api/v1/rbs/sessions/{id}:release     -> 204
//
// Errors are {"error": "..."} (internal/httperror's Message shape, which
// Client reads) with 400, 401, 403, 404 or 503 (no agent).
package sessionapi
