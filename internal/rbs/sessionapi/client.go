package sessionapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
)

// Client is the proxy's rbs.SessionProvider: it calls the control plane's
// sessions API with the user's token.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

var _ rbs.SessionProvider = (*Client)(nil)

// NewClient returns a client for cfg: cfg.Server, the token in the
// cfg.Credentials file and, when set, cfg.CAFile to verify the server.
func NewClient(cfg rbs.ProxyConfig) (*Client, error) {
	base, err := url.Parse(cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("sessions client: %w", err)
	}
	token, err := ReadToken(cfg.Credentials)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pemCerts, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("sessions client: %w", err)
		}
		pool, err := pki.PoolFromPEM(pemCerts)
		if err != nil {
			return nil, fmt.Errorf("sessions client: %s: %w", cfg.CAFile, err)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if cfg.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientCert, cfg.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("sessions client: client certificate: %w", err)
		}
		tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	}
	return &Client{base: base, token: token, http: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}, nil
}

// ReadToken reads the bearer token from a credentials file: either JSON
// with a "token" field (other fields are ignored) or the token alone.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read credentials: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if strings.HasPrefix(s, "{") {
		var c struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return "", fmt.Errorf("read credentials %s: %w", path, err)
		}
		s = c.Token
	}
	if s == "" || strings.ContainsAny(s, " \n\r\t") {
		return "", fmt.Errorf("read credentials %s: no token", path)
	}
	return s, nil
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath(path).String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("control plane: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e errorResponse
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		msg := e.Error
		if msg == "" {
			msg = resp.Status
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("control plane %s: %w (check your credentials)", c.base.Host, auth.ErrUnauthenticated)
		case http.StatusForbidden:
			return fmt.Errorf("control plane %s: %w: %s", c.base.Host, auth.ErrForbidden, strings.TrimPrefix(msg, auth.ErrForbidden.Error()+": "))
		case http.StatusNotFound:
			return fmt.Errorf("control plane: %w", ErrNotFound)
		case http.StatusServiceUnavailable:
			return fmt.Errorf("control plane: %w: %s", rbs.ErrNoAgent, strings.TrimPrefix(msg, rbs.ErrNoAgent.Error()+": "))
		}
		return fmt.Errorf("control plane: %s", msg)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("control plane answer: %w", err)
	}
	return nil
}

// GetServer asks for the user's session for req and builds the tunnel's
// TLS configuration from the answer.
func (c *Client) GetServer(ctx context.Context, req rbs.ServerRequest) (rbs.Endpoint, error) {
	key, csr, err := pki.NewCSR()
	if err != nil {
		return rbs.Endpoint{}, err
	}
	var resp getServerResponse
	if err := c.post(ctx, PathGetServer, getServerRequest{ServerRequest: req, CSR: string(csr)}, &resp); err != nil {
		return rbs.Endpoint{}, err
	}
	return endpointFrom(resp, key)
}

// endpointFrom checks the control plane's answer and builds the tunnel's
// TLS configuration: the user's certificate over key, trusting only the
// given CA and only the agent's identity.
func endpointFrom(resp getServerResponse, key *ecdsa.PrivateKey) (rbs.Endpoint, error) {
	if err := pki.ValidateName(resp.SessionID); err != nil {
		return rbs.Endpoint{}, fmt.Errorf("control plane answer: session id: %w", err)
	}
	if _, _, err := net.SplitHostPort(resp.AgentAddress); err != nil {
		return rbs.Endpoint{}, fmt.Errorf("control plane answer: agent address: %w", err)
	}
	agent, err := pki.ParseIdentity(resp.AgentIdentity)
	if err != nil || agent.Kind != pki.KindAgent {
		return rbs.Endpoint{}, fmt.Errorf("control plane answer: agent identity %q is not an agent", resp.AgentIdentity)
	}
	pool, err := pki.PoolFromPEM([]byte(resp.CACertPEM))
	if err != nil {
		return rbs.Endpoint{}, fmt.Errorf("control plane answer: %w", err)
	}
	cert, err := pki.KeyPair([]byte(resp.ClientCertPEM), key)
	if err != nil {
		return rbs.Endpoint{}, fmt.Errorf("control plane answer: %w", err)
	}
	return rbs.Endpoint{
		SessionID:         resp.SessionID,
		Address:           resp.AgentAddress,
		Agent:             agent.Name,
		TLS:               pki.ClientConfig(pool, cert, agent),
		Reused:            resp.Reused,
		HeartbeatInterval: time.Duration(resp.HeartbeatSeconds) * time.Second,
	}, nil
}

// Heartbeat marks the session as in use.
func (c *Client) Heartbeat(ctx context.Context, sessionID string) error {
	return c.post(ctx, pathSessions+url.PathEscape(sessionID)+":heartbeat", nil, nil)
}

// Release detaches this proxy from the session.
func (c *Client) Release(ctx context.Context, sessionID string) error {
	return c.post(ctx, pathSessions+url.PathEscape(sessionID)+":release", nil, nil)
}
