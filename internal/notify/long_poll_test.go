package notify

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// checker counts checks and reports done once ready is set.
type checker struct {
	calls int
	ready bool
	err   error
}

func (c *checker) check() (bool, error) {
	c.calls++
	return c.ready, c.err
}

func TestLongPollDoneAtOnce(t *testing.T) {
	n := New()
	c := &checker{ready: true}
	if err := n.LongPoll(context.Background(), "t", time.Hour, time.Second, c.check); err != nil || c.calls != 1 {
		t.Errorf("done at once: %v after %d checks", err, c.calls)
	}
	c = &checker{}
	if err := n.LongPoll(context.Background(), "t", 0, time.Second, c.check); err != nil || c.calls != 1 {
		t.Errorf("wait 0: %v after %d checks, want nil after 1", err, c.calls)
	}
	c = &checker{err: errors.New("boom")}
	if err := n.LongPoll(context.Background(), "t", time.Hour, time.Second, c.check); err != c.err || c.calls != 1 {
		t.Errorf("check fails: %v after %d checks", err, c.calls)
	}
}

// A notification of the topic re-runs check at once; another topic's
// does not.
func TestLongPollWokenByNotify(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		c := &checker{}
		done := make(chan error)
		start := time.Now()
		go func() { done <- n.LongPoll(context.Background(), "t", time.Hour, time.Hour, c.check) }()
		synctest.Wait()
		n.Notify("other")
		synctest.Wait()
		if c.calls != 1 {
			t.Fatalf("checks after another topic's notify: %d, want 1", c.calls)
		}
		time.Sleep(time.Minute)
		c.ready = true
		n.Notify("t")
		if err := <-done; err != nil || c.calls != 2 {
			t.Errorf("woken: %v after %d checks", err, c.calls)
		}
		if d := time.Since(start); d != time.Minute {
			t.Errorf("returned after %v, want 1m (at the notify)", d)
		}
	})
}

// Without notifications check still runs every interval, and the poll
// ends when the wait is over.
func TestLongPollIntervalAndWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		c := &checker{}
		start := time.Now()
		if err := n.LongPoll(context.Background(), "t", 10*time.Second, 3*time.Second, c.check); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 10*time.Second || c.calls != 4 {
			t.Errorf("poll of 10s, interval 3s: %v, %d checks; want 10s, 4 (at 0, 3, 6, 9s)", d, c.calls)
		}
	})
}

// Forever waits until check is done.
func TestLongPollForever(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		calls := 0
		err := n.LongPoll(context.Background(), "t", Forever, time.Second, func() (bool, error) {
			calls++
			return calls == 100, nil
		})
		if err != nil || calls != 100 {
			t.Errorf("forever: %v after %d checks", err, calls)
		}
	})
}

// The one behaviour when the context ends: the poll returns its error.
func TestLongPollContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		ctx, cancel := context.WithCancel(context.Background())
		c := &checker{}
		done := make(chan error)
		go func() { done <- n.LongPoll(ctx, "t", time.Hour, time.Second, c.check) }()
		time.Sleep(30 * time.Second)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v, want context.Canceled", err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.LongPoll(ctx, "t", Forever, time.Second, c.check); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("deadline: %v, want context.DeadlineExceeded", err)
		}
	})
}
