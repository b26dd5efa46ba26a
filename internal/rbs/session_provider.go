package rbs

import (
	"context"
	"crypto/tls"
	"errors"
	"time"
)

// ErrNoAgent means no agent can serve a session right now: none has
// capacity, or none has the requested Bazel version. Its wrapping error
// says which.
var ErrNoAgent = errors.New("no agent can serve this session")

// ServerRequest is what a proxy asks for: a Bazel server for one workspace
// of the authenticated user. The user is never part of it: the provider
// takes it from the credentials.
type ServerRequest struct {
	// RepoHash identifies the workspace (see RepoHash).
	RepoHash string `json:"repo_hash"`
	// Workspace, OutputBase and OutputUserRoot are the developer's absolute
	// paths, which the agent mirrors.
	Workspace      string `json:"workspace"`
	OutputBase     string `json:"output_base"`
	OutputUserRoot string `json:"output_user_root"`
	// InstallMD5 identifies the Bazel release exactly (the client's
	// --install_md5); an agent serves the session only with the same one.
	InstallMD5 string `json:"install_md5"`
	// BazelVersion is informational (for messages), e.g. "4.2.3".
	BazelVersion string `json:"bazel_version,omitempty"`
	// StartupOptions are the server startup flags the agent passes to its
	// Bazel server (paths and JVM flags removed). Sessions with different
	// startup options are different sessions, as they are different servers
	// locally.
	StartupOptions []string `json:"startup_options,omitempty"`
	// ClientHost is the developer machine's host name, for display.
	ClientHost string `json:"client_host,omitempty"`
}

// Endpoint is where a session's tunnel is and how to reach it.
type Endpoint struct {
	SessionID string
	// Address is the agent's tunnel, host:port.
	Address string
	// Agent names the agent, for messages.
	Agent string
	// TLS presents the user's client certificate and accepts only the
	// agent's identity.
	TLS *tls.Config
	// Reused is true when the session was already running (warm).
	Reused bool
	// HeartbeatInterval is how often a busy proxy should call Heartbeat.
	HeartbeatInterval time.Duration
}

// SessionProvider finds or starts a remote Bazel server for the
// authenticated user. The control plane implements it over the network
// (session.Client); tests use a local one.
type SessionProvider interface {
	// GetServer returns the live session of this user for req (same repo,
	// Bazel version and startup options), scheduling a new one when none
	// exists. It may take a while; the session's Bazel server may still be
	// starting when it returns.
	GetServer(ctx context.Context, req ServerRequest) (Endpoint, error)
	// Heartbeat marks the session as in use, postponing its idle reaping.
	Heartbeat(ctx context.Context, sessionID string) error
	// Release says this proxy no longer uses the session. The session stays
	// warm for its idle TTL, so a later proxy can attach to it again.
	Release(ctx context.Context, sessionID string) error
}

// SessionMetadataKey is the gRPC metadata key naming the session of a
// tunnel call.
const SessionMetadataKey = "nimbus-rbs-session"
