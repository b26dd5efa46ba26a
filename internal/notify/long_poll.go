package notify

import (
	"context"
	"time"
)

// Forever is a LongPoll wait without a bound: the poll ends when check is
// done or the context ends.
const Forever time.Duration = -1

// LongPoll waits for something to happen, the one way every long poll of
// the control plane does. check looks at the source of truth and reports
// whether the caller has what it waited for; it runs at once, then again
// whenever topic is notified and at least every interval (a notification
// from another replica is best effort and may be lost). The topic's
// channel is taken before each check, so a change made while check runs
// is not missed.
//
// It returns:
//   - nil when check reports done, or when wait (from now) is over without
//     that: the caller answers with what check saw last. With wait 0
//     check runs once.
//   - check's error, at once.
//   - ctx.Err() when the context ends first: a poll cut short has nothing
//     to answer (the client went away, or the server is stopping), and
//     the caller returns the error.
func (n *Notifier) LongPoll(ctx context.Context, topic string, wait, interval time.Duration, check func() (done bool, err error)) error {
	if interval <= 0 {
		interval = time.Second
	}
	var over <-chan time.Time
	if wait >= 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		over = t.C
	}
	tick := time.NewTimer(interval)
	defer tick.Stop()
	for {
		woken := n.Wait(topic)
		done, err := check()
		if err != nil || done || wait == 0 {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		tick.Reset(interval)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-over:
			return nil
		case <-woken:
		case <-tick.C:
		}
	}
}
