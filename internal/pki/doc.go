// Package pki is Nimbus's small certificate authority: the control plane
// creates or loads one CA (an ECDSA P-256 key and a self-signed certificate)
// and issues short-lived leaf certificates to agents (at enrollment) and to
// users (through their credentials, for remote Bazel tunnels).
//
// Every leaf carries exactly one identity as a URI SAN,
// spiffe://nimbus/org/<org>/<kind>/<name>, where kind is "agent", "user" or
// "server". ServerConfig and ClientConfig build TLS 1.3 configurations that
// require and verify certificates of this CA on both sides, and PeerIdentity
// reads the verified identity of the other end of a connection.
package pki
