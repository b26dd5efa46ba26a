package apiv1

import "time"

// Remote Bazel between the control plane and agents.
const (
	// PathAgentRBSRegister: an agent offers remote Bazel and gets its
	// tunnel certificate (RBSRegister → RBSRegistered).
	PathAgentRBSRegister = "/api/v1/agent/rbs/register"
	// PathAgentSessions: the agent's sessions long poll (SessionsSync →
	// SessionOrders).
	PathAgentSessions = "/api/v1/agent/sessions"
)

// PathAgentSession is where an agent reports a session's state
// (SessionReport).
func PathAgentSession(id string) string { return "/api/v1/agent/sessions/" + id + "/state" }

// RBSRegister is what an agent offers remote Bazel.
type RBSRegister struct {
	// CSR is a PEM certificate signing request for the tunnel's key; the
	// certificate names the agent's identity.
	CSR string `json:"csr"`
	// Address is the tunnel as proxies reach it, host:port.
	Address     string   `json:"address"`
	InstallMD5s []string `json:"install_md5s"`
	Versions    []string `json:"versions,omitempty"`
	MaxSessions int      `json:"max_sessions"`
}

// RBSRegistered answers RBSRegister.
type RBSRegistered struct {
	CertPEM string `json:"cert_pem"`
	// CAPEM verifies users' tunnel certificates.
	CAPEM    string `json:"ca_pem"`
	Identity string `json:"identity"`
}

// SessionStatus is a session as an agent runs it.
type SessionStatus struct {
	ID string `json:"id"`
	// State: starting, ready, stopped or failed.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// SessionsSync is the body of the agent's sessions long poll: what it runs
// now. The answer comes at once when there is something to do, otherwise
// after at most WaitSeconds.
type SessionsSync struct {
	Sessions    []SessionStatus `json:"sessions"`
	WaitSeconds int             `json:"wait_seconds"`
}

// SessionOrders tells an agent which sessions to start and stop.
type SessionOrders struct {
	Start []SessionOrder `json:"start"`
	Stop  []string       `json:"stop"`
}

// SessionOrder is a session to start.
type SessionOrder struct {
	ID string `json:"id"`
	// User is the only identity (spiffe://…) that may use the session.
	User           string   `json:"user"`
	RepoHash       string   `json:"repo_hash"`
	InstallMD5     string   `json:"install_md5"`
	Workspace      string   `json:"workspace"`
	OutputBase     string   `json:"output_base"`
	OutputUserRoot string   `json:"output_user_root"`
	StartupOptions []string `json:"startup_options,omitempty"`
	// Egress is the session's network policy (from the control plane's
	// egress rules, source rbs); absent: offline.
	Egress *EgressPolicy `json:"egress,omitempty"`
}

// SessionReport is an agent's report of one session's state.
type SessionReport struct {
	// State: ready, stopped or failed.
	State   string `json:"state"`
	Address string `json:"address,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Session is a remote Bazel session as `nimbus ctl sessions list` shows it.
type Session struct {
	ID         string    `json:"id"`
	User       string    `json:"user"`
	RepoHash   string    `json:"repo_hash"`
	Workspace  string    `json:"workspace"`
	InstallMD5 string    `json:"install_md5"`
	AgentID    string    `json:"agent_id"`
	State      string    `json:"state"`
	Address    string    `json:"address,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	StoppedAt  time.Time `json:"stopped_at,omitzero"`
}
