// Package apiclient is a small client of Nimbus's HTTP API, shared by the
// agent and `nimbus ctl`.
package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// Client calls one Nimbus server with one credential.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	Token   string
	HTTP    *http.Client
	// UserAgent identifies the caller, e.g. "nimbus-agent/0.1".
	UserAgent string
}

// New returns a client with a default HTTP client.
func New(baseURL, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: &http.Client{Timeout: 0}}
}

// Error is a non-2xx answer.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is the answer's Retry-After (429, 503), or 0.
	RetryAfter time.Duration
}

// RetryAfter is how long the server asked to wait before trying again
// (an *Error's RetryAfter), or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("server answered %d", e.Status)
	}
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
}

// IsStatus reports whether err is an *Error with this HTTP status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// Retryable reports whether a call that failed with err may succeed if
// repeated: transport errors and 5xx/429 answers. 4xx answers are final.
func Retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status >= 500 || e.Status == http.StatusTooManyRequests
	}
	return err != nil && !errors.Is(err, context.Canceled)
}

// Body is a request body sent as it is, with its Content-Type, where Do
// and Raw would send any other value as JSON.
type Body struct {
	ContentType string
	Data        []byte
}

// Do sends in (JSON, unless nil or a Body) and decodes a 2xx answer into out (unless
// nil). It returns the status code: callers of long polls need 204.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) (int, error) {
	resp, err := c.Raw(ctx, method, path, in)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// Raw sends a request and returns the response of a 2xx answer with its
// body unread (the caller closes it); any other answer becomes an *Error.
func (c *Client) Raw(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	contentType := "application/json"
	switch in := in.(type) {
	case nil:
	case Body:
		body, contentType = bytes.NewReader(in.Data), in.ContentType
	default:
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var retryAfter time.Duration
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 && n <= 3600 {
		retryAfter = time.Duration(n) * time.Second
	}
	var e apiv1.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var short struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &short) == nil && short.Error != "" {
		// The shape of the remote Bazel proxy's routes.
		return nil, &Error{Status: resp.StatusCode, Message: short.Error, RetryAfter: retryAfter}
	}
	if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
		msg := strings.TrimSpace(string(b))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return nil, &Error{Status: resp.StatusCode, Message: msg, RetryAfter: retryAfter}
	}
	return nil, &Error{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, RetryAfter: retryAfter}
}

// Backoff returns the wait before retry number n (from 0): exponential from
// 200 ms to max, with jitter so a fleet of agents does not retry in step.
func Backoff(n int, max time.Duration) time.Duration {
	d := 200 * time.Millisecond << min(n, 10)
	if d > max || d <= 0 {
		d = max
	}
	return d/2 + time.Duration(randInt63n(int64(d/2)+1))
}

// HTTPClientTrusting returns an HTTP client that trusts the PEM bundle in
// caFile (Nimbus's own CA, for a server run with --tls-auto), besides
// nothing else; an empty caFile gives the system's roots. cert, when not
// nil, is presented to the server (mutual TLS).
func HTTPClientTrusting(caFile string, cert *tls.Certificate) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("ca file %s: no PEM certificate", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: tr}, nil
}
