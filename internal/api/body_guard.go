package api

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/httperror"
)

// errSlowBody: a request body did not arrive by its deadline.
var errSlowBody = httperror.New(http.StatusRequestTimeout, apiv1.CodeTimeout,
	"request body too slow: it must arrive at a minimum rate, and on unauthenticated routes within a deadline")

// guardedBody is a request body with a read deadline: the request's
// minimum average rate (after a grace period) and, on open routes, an
// absolute deadline. The deadline is the connection's (or the HTTP/2
// stream's), set before the handler runs and moved on at every read, so
// that it also bounds the server's own discard of a body the handler did
// not read; it is lifted once the body is read to its end (HTTP/1's
// background read after the body must not time out a long poll).
type guardedBody struct {
	body  io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	grace time.Duration
	rate  int64 // bytes per second; 0: none

	mu     sync.Mutex
	hard   time.Time // zero: none
	read   int64
	ended  bool
	onSlow func()
}

func newGuardedBody(w http.ResponseWriter, r *http.Request, l EdgeLimits, onSlow func()) *guardedBody {
	g := &guardedBody{body: r.Body, rc: http.NewResponseController(w), start: time.Now(), grace: l.BodyRateGrace,
		rate: l.MinBodyRate, onSlow: onSlow}
	g.mu.Lock()
	g.setDeadlineLocked()
	g.mu.Unlock()
	return g
}

// limitTo adds an absolute deadline (an open route's body timeout).
func (g *guardedBody) limitTo(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hard = g.start.Add(d)
	g.setDeadlineLocked()
}

func (g *guardedBody) deadlineLocked() time.Time {
	var d time.Time
	if g.rate > 0 {
		d = g.start.Add(g.grace + time.Duration(float64(g.read)/float64(g.rate)*float64(time.Second)))
	}
	if !g.hard.IsZero() && (d.IsZero() || g.hard.Before(d)) {
		d = g.hard
	}
	return d
}

func (g *guardedBody) setDeadlineLocked() {
	if g.ended {
		return
	}
	// Not every ResponseWriter can (a recorder in tests): then no limit.
	_ = g.rc.SetReadDeadline(g.deadlineLocked())
}

func (g *guardedBody) Read(p []byte) (int, error) {
	n, err := g.body.Read(p)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.read += int64(n)
	switch {
	case err == io.EOF:
		g.ended = true
		_ = g.rc.SetReadDeadline(time.Time{})
	case err != nil && timeout(err):
		if g.onSlow != nil {
			g.onSlow()
			g.onSlow = nil
		}
		return n, errSlowBody
	case err == nil:
		g.setDeadlineLocked()
	}
	return n, err
}

func (g *guardedBody) Close() error { return g.body.Close() }

func timeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
