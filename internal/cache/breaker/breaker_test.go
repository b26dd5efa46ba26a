package breaker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

var errDown = errors.New("connection refused")

func call(t *testing.T, b *Breaker, err error) error {
	t.Helper()
	tk, aerr := b.Allow()
	if aerr != nil {
		return aerr
	}
	tk.Done(context.Background(), err)
	return err
}

func TestBreakerLifecycle(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	b := New(Options{Failures: 3, OpenFor: 10 * time.Second, MaxOpenFor: 30 * time.Second, Now: clk.Now})
	// Client errors and the caller's own cancellation do not count.
	for _, err := range []error{blobstore.ErrNotFound, fmt.Errorf("x: %w", blobstore.ErrInvalid), blobstore.ErrQuotaExceeded} {
		call(t, b, err)
		call(t, b, err)
		call(t, b, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 5 {
		tk, _ := b.Allow()
		tk.Done(ctx, context.Canceled)
	}
	// A success in between resets the count.
	call(t, b, errDown)
	call(t, b, errDown)
	call(t, b, nil)
	call(t, b, errDown)
	call(t, b, errDown)
	if b.State() != Closed {
		t.Fatalf("state %s after non-consecutive failures, want closed", b.State())
	}
	call(t, b, errDown)
	if b.State() != Open || b.Opened() != 1 {
		t.Fatalf("state %s (opened %d) after 3 consecutive failures", b.State(), b.Opened())
	}
	// Open: fail fast with ErrUnavailable.
	if err := call(t, b, nil); !errors.Is(err, blobstore.ErrUnavailable) {
		t.Fatalf("call while open: %v, want ErrUnavailable", err)
	}
	// Half-open: one probe at a time.
	clk.t = clk.t.Add(10 * time.Second)
	probe, err := b.Allow()
	if err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	if _, err := b.Allow(); !errors.Is(err, blobstore.ErrUnavailable) {
		t.Fatalf("second call during the probe: %v, want ErrUnavailable", err)
	}
	// A failed probe opens it for twice as long.
	probe.Done(context.Background(), errDown)
	clk.t = clk.t.Add(19 * time.Second)
	if b.State() != Open {
		t.Fatalf("state %s 19s after a failed probe, want open (20s wait)", b.State())
	}
	clk.t = clk.t.Add(time.Second)
	// An abandoned probe gives its slot to the next call.
	probe, _ = b.Allow()
	probe.Abandon()
	probe, err = b.Allow()
	if err != nil {
		t.Fatalf("probe after an abandoned one: %v", err)
	}
	probe.Done(context.Background(), nil)
	if b.State() != Closed {
		t.Fatalf("state %s after a good probe, want closed", b.State())
	}
	// The wait starts again from OpenFor.
	for range 3 {
		call(t, b, errDown)
	}
	clk.t = clk.t.Add(10 * time.Second)
	if b.State() != HalfOpen {
		t.Errorf("state %s 10s after reopening, want half-open", b.State())
	}
}

// TestBreakerWaitIsBounded: repeated failed probes never wait past MaxOpenFor.
func TestBreakerWaitIsBounded(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	b := New(Options{Failures: 1, OpenFor: time.Second, MaxOpenFor: 8 * time.Second, Now: clk.Now})
	call(t, b, errDown)
	for range 10 {
		clk.t = clk.t.Add(8 * time.Second)
		if b.State() != HalfOpen {
			t.Fatalf("state %s after the maximum wait", b.State())
		}
		call(t, b, errDown)
	}
}
