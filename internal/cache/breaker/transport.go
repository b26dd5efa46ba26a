package breaker

import (
	"io"
	"net/http"
)

// Transport is an http.RoundTripper that sends requests through a Breaker:
// while it is open, requests fail at once. A transport error or a 5xx
// response is a failure; an error reading the response body is one too.
type Transport struct {
	Breaker *Breaker
	Next    http.RoundTripper
}

var _ http.RoundTripper = (*Transport)(nil)

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tk, err := t.Breaker.Allow()
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := t.Next.RoundTrip(req)
	if err != nil {
		tk.Done(req.Context(), err)
		return nil, err
	}
	if resp.StatusCode >= 500 {
		tk.Done(req.Context(), errServer)
		return resp, nil
	}
	if req.Method == http.MethodHead || resp.Body == nil || resp.Body == http.NoBody {
		tk.Done(req.Context(), nil)
		return resp, nil
	}
	// The verdict waits for the body: a dependency that dies mid-stream
	// counts as failing.
	resp.Body = &body{rc: resp.Body, tk: tk, req: req}
	return resp, nil
}

type serverError struct{}

func (serverError) Error() string { return "server error" }

var errServer error = serverError{}

type body struct {
	rc   io.ReadCloser
	tk   Ticket
	req  *http.Request
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && !b.done {
		b.done = true
		if err == io.EOF {
			b.tk.Done(b.req.Context(), nil)
		} else {
			b.tk.Done(b.req.Context(), err)
		}
	}
	return n, err
}

func (b *body) Close() error {
	if !b.done {
		// Closed early by the reader: the headers came, which is enough.
		b.done = true
		b.tk.Done(b.req.Context(), nil)
	}
	return b.rc.Close()
}
