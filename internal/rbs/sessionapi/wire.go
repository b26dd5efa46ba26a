package sessionapi

import "github.com/nimbus-build/nimbus/internal/rbs"

// API paths.
const (
	PathGetServer = "/api/v1/rbs/sessions:get"
	pathSessions  = "/api/v1/rbs/sessions/"
)

type getServerRequest struct {
	rbs.ServerRequest
	// CSR is a PEM certificate signing request for the proxy's tunnel key.
	CSR string `json:"csr"`
}

type getServerResponse struct {
	SessionID        string `json:"session_id"`
	AgentAddress     string `json:"agent_address"`
	AgentIdentity    string `json:"agent_identity"`
	CACertPEM        string `json:"ca_pem"`
	ClientCertPEM    string `json:"client_cert_pem"`
	Reused           bool   `json:"reused"`
	HeartbeatSeconds int    `json:"heartbeat_seconds"`
}

type errorResponse struct {
	Error string `json:"error"`
}
