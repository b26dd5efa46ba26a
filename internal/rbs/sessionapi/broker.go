package sessionapi

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
)

// ErrNotFound: no such session of this user.
var ErrNotFound = errors.New("session not found")

// Grant is a session given to a proxy.
type Grant struct {
	SessionID    string
	AgentAddress string
	Agent        pki.Identity
	// CACertPEM verifies the agent; ClientCertPEM is the user's tunnel
	// certificate, issued over the request's CSR.
	CACertPEM         []byte
	ClientCertPEM     []byte
	Reused            bool
	HeartbeatInterval time.Duration
}

// Broker finds or starts sessions for authenticated users. Errors wrap
// auth.ErrForbidden, ErrNotFound or rbs.ErrNoAgent where they apply.
type Broker interface {
	GetServer(ctx context.Context, p auth.Principal, req rbs.ServerRequest, csr *x509.CertificateRequest) (Grant, error)
	Heartbeat(ctx context.Context, p auth.Principal, sessionID string) error
	Release(ctx context.Context, p auth.Principal, sessionID string) error
}
