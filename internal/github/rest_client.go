package github

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	apiVersion      = "2022-11-28"
	maxResponseBody = 1 << 20
	maxMessageLen   = 1024
)

// restClient sends requests to GitHub's REST API, retrying transient failures
// a bounded number of times with jittered backoff and honouring Retry-After.
type restClient struct {
	baseURL     string // no trailing slash
	http        *http.Client
	userAgent   string
	maxAttempts int
	baseDelay   time.Duration
	maxDelay    time.Duration
	sleep       func(context.Context, time.Duration) error
	now         func() time.Time
	log         *slog.Logger
}

// do sends method path (relative to the base URL) with the Authorization
// header auth and the JSON body reqBody (nil for none). A response whose
// status is want is decoded into out (unless out is nil); any other status is
// an *APIError. Retryable failures are retried.
func (c *restClient) do(ctx context.Context, method, path, auth string, reqBody []byte, want int, out any) error {
	return c.doHeader(ctx, method, path, auth, reqBody, want, out, nil)
}

// doHeader is do that also stores the successful response's headers in
// hdr (when not nil), for pagination links.
func (c *restClient) doHeader(ctx context.Context, method, path, auth string, reqBody []byte, want int, out any, hdr *http.Header) error {
	for attempt := 1; ; attempt++ {
		err := c.once(ctx, method, path, auth, reqBody, want, out, hdr)
		if err == nil || attempt >= c.maxAttempts || !Retryable(err) || ctx.Err() != nil {
			return err
		}
		delay := c.backoff(attempt)
		if ae := (*APIError)(nil); errors.As(err, &ae) && ae.RetryAfter > 0 {
			delay = ae.RetryAfter
		}
		if delay > c.maxDelay {
			// GitHub asked for a longer wait than a request should
			// block for: let the caller come back later.
			return err
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "retrying github api request",
			slog.String("method", method), slog.String("path", path),
			slog.Int("attempt", attempt), slog.Duration("delay", delay), slog.Any("error", err))
		if err := c.sleep(ctx, delay); err != nil {
			return fmt.Errorf("github api %s %s: %w", method, path, err)
		}
	}
}

// backoff is the jittered delay after the attempt-th failure: uniformly in
// [d/2, d] where d doubles from baseDelay, capped at maxDelay.
func (c *restClient) backoff(attempt int) time.Duration {
	d := c.baseDelay << (attempt - 1)
	if d > c.maxDelay || d <= 0 {
		d = c.maxDelay
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

func (c *restClient) once(ctx context.Context, method, path, auth string, reqBody []byte, want int, out any, hdr *http.Header) error {
	var body io.Reader
	if reqBody != nil {
		body = bytes.NewReader(reqBody)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, body)
	if err != nil {
		return fmt.Errorf("github api %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", apiVersion)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Authorization", auth)
	if reqBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("github api %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return fmt.Errorf("github api %s %s: read response: %w", method, path, err)
	}
	if len(data) > maxResponseBody {
		return fmt.Errorf("github api %s %s: response larger than %d bytes", method, path, maxResponseBody)
	}
	if resp.StatusCode != want {
		return c.apiError(method, path, resp, data)
	}
	if hdr != nil {
		*hdr = resp.Header
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("github api %s %s: decode response: %w", method, path, err)
	}
	return nil
}

func (c *restClient) apiError(method, path string, resp *http.Response, data []byte) *APIError {
	e := &APIError{
		Method:     method,
		Path:       path,
		StatusCode: resp.StatusCode,
		RequestID:  resp.Header.Get("X-GitHub-Request-Id"),
	}
	var body struct {
		Message          string            `json:"message"`
		DocumentationURL string            `json:"documentation_url"`
		Errors           []json.RawMessage `json:"errors"`
	}
	if json.Unmarshal(data, &body) == nil {
		e.Message = body.Message
		e.DocumentationURL = truncate(body.DocumentationURL, maxMessageLen)
		if details := errorDetails(body.Errors); details != "" {
			e.Message += " (" + details + ")"
		}
	}
	e.Message = truncate(e.Message, maxMessageLen)

	if s := resp.Header.Get("Retry-After"); s != "" {
		e.RetryAfter = parseRetryAfter(s, c.now())
	}
	limited := resp.StatusCode == http.StatusTooManyRequests ||
		(resp.StatusCode == http.StatusForbidden &&
			(resp.Header.Get("Retry-After") != "" ||
				resp.Header.Get("X-RateLimit-Remaining") == "0" ||
				strings.Contains(strings.ToLower(e.Message), "rate limit")))
	e.RateLimited = limited
	if limited && e.RetryAfter == 0 && resp.Header.Get("X-RateLimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			if d := time.Unix(reset, 0).Sub(c.now()); d > 0 {
				e.RetryAfter = d
			}
		}
	}
	return e
}

// errorDetails summarises the "errors" array of a 422 response, whose items
// are objects ({resource, field, code, message}) or plain strings.
func errorDetails(items []json.RawMessage) string {
	var parts []string
	for _, raw := range items {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			parts = append(parts, s)
			continue
		}
		var o struct{ Resource, Field, Code, Message string }
		if json.Unmarshal(raw, &o) != nil {
			continue
		}
		switch {
		case o.Message != "":
			parts = append(parts, o.Message)
		case o.Field != "":
			parts = append(parts, o.Field+" "+o.Code)
		case o.Code != "":
			parts = append(parts, o.Code)
		}
	}
	return strings.Join(parts, "; ")
}

// parseRetryAfter reads Retry-After: delay seconds or an HTTP date.
func parseRetryAfter(s string, now time.Time) time.Duration {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		return min(time.Duration(n), 24*3600) * time.Second
	}
	if t, err := http.ParseTime(s); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// sleepContext waits d or until ctx is done.
func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
