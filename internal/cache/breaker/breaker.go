// Package breaker is a circuit breaker for a remote dependency (the cache's
// object storage tier). After Failures consecutive failures it opens: calls
// fail at once with blobstore.ErrUnavailable instead of waiting on a
// dependency that is down. After a wait it half-opens: one call, the probe,
// goes through; its success closes the breaker, its failure opens it again
// for twice as long (up to MaxOpenFor).
package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// State is the breaker's state.
type State int

const (
	// Closed lets every call through.
	Closed State = iota
	// Open fails every call at once.
	Open
	// HalfOpen lets one probe through and fails the others.
	HalfOpen
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Options tunes a Breaker.
type Options struct {
	// Failures is how many consecutive failures open the breaker. Default 5.
	Failures int
	// OpenFor is how long the breaker stays open before its first probe.
	// Default 5 seconds.
	OpenFor time.Duration
	// MaxOpenFor bounds the wait after repeated failed probes. Default 1 minute.
	MaxOpenFor time.Duration
	// Name appears in errors and logs.
	Name string
	// Logger receives state changes. Default: discard.
	Logger *slog.Logger
	// Now returns the current time. Default time.Now; tests replace it.
	Now func() time.Time
}

// Breaker is a circuit breaker; it is safe for concurrent use.
type Breaker struct {
	opts Options

	mu        sync.Mutex
	state     State
	failures  int
	openFor   time.Duration
	openUntil time.Time
	probing   bool
	opened    int64 // times it opened
}

// New returns a closed breaker.
func New(opts Options) *Breaker {
	if opts.Failures <= 0 {
		opts.Failures = 5
	}
	if opts.OpenFor <= 0 {
		opts.OpenFor = 5 * time.Second
	}
	if opts.MaxOpenFor < opts.OpenFor {
		opts.MaxOpenFor = max(opts.OpenFor, time.Minute)
	}
	if opts.Name == "" {
		opts.Name = "dependency"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Breaker{opts: opts, openFor: opts.OpenFor}
}

// Ticket is one call let through by Allow; pass its outcome to Done.
type Ticket struct {
	b     *Breaker
	probe bool
}

// Allow asks to make a call. It fails with an error wrapping
// blobstore.ErrUnavailable while the breaker is open, or half-open with its
// probe in flight.
func (b *Breaker) Allow() (Ticket, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case Closed:
		return Ticket{b: b}, nil
	case Open:
		if b.opts.Now().Before(b.openUntil) {
			return Ticket{}, b.unavailable()
		}
		b.setLocked(HalfOpen)
	}
	if b.probing {
		return Ticket{}, b.unavailable()
	}
	b.probing = true
	return Ticket{b: b, probe: true}, nil
}

func (b *Breaker) unavailable() error {
	return fmt.Errorf("%s: circuit breaker %s: %w", b.opts.Name, b.state, blobstore.ErrUnavailable)
}

// Done reports a call's outcome: nil is a success; an error is a failure
// unless Failure says it is the caller's (ctx is the call's context).
// A ticket from a failed Allow is ignored.
func (t Ticket) Done(ctx context.Context, err error) {
	if t.b == nil {
		return
	}
	t.b.report(t.probe, Failure(ctx, err))
}

// Abandon releases a ticket whose call ended without a verdict (the caller
// gave up); a probe's slot goes to the next call.
func (t Ticket) Abandon() {
	if t.b == nil || !t.probe {
		return
	}
	t.b.mu.Lock()
	t.b.probing = false
	t.b.mu.Unlock()
}

// Failure reports whether err counts against the dependency: not a client
// error (not found, invalid, quota), nor the caller's own cancellation.
func Failure(ctx context.Context, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, blobstore.ErrNotFound), errors.Is(err, blobstore.ErrInvalid),
		errors.Is(err, blobstore.ErrQuotaExceeded), errors.Is(err, blobstore.ErrTooLarge):
		return false
	case ctx != nil && ctx.Err() != nil:
		return false
	}
	return true
}

func (b *Breaker) report(probe, failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
		if failed {
			b.openFor = min(2*b.openFor, b.opts.MaxOpenFor)
			b.openLocked()
			return
		}
		b.failures = 0
		b.openFor = b.opts.OpenFor
		b.setLocked(Closed)
		return
	}
	if b.state != Closed {
		return // a call from before the breaker opened
	}
	if !failed {
		b.failures = 0
		return
	}
	b.failures++
	if b.failures >= b.opts.Failures {
		b.openLocked()
	}
}

func (b *Breaker) openLocked() {
	b.openUntil = b.opts.Now().Add(b.openFor)
	b.opened++
	b.setLocked(Open)
}

func (b *Breaker) setLocked(s State) {
	if b.state == s {
		return
	}
	b.opts.Logger.Warn("circuit breaker", "dependency", b.opts.Name, "from", b.state.String(), "to", s.String(), "retry_in", b.openFor)
	b.state = s
}

// State returns the current state (an open breaker whose wait is over
// reads HalfOpen).
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == Open && !b.opts.Now().Before(b.openUntil) {
		return HalfOpen
	}
	return b.state
}

// Opened returns how many times the breaker has opened.
func (b *Breaker) Opened() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opened
}
