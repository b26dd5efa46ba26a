package jobs

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// orgLimiter defers jobs of an org that creates them faster than its rate:
// an excess job is still accepted and stored, with a not-before time at
// which the token bucket would have let it through. Nothing is dropped.
type orgLimiter struct {
	rate  rate.Limit
	burst int

	mu   sync.Mutex
	orgs map[string]*rate.Limiter
}

func newOrgLimiter(perSecond float64, burst int) *orgLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &orgLimiter{rate: rate.Limit(perSecond), burst: max(burst, 1), orgs: map[string]*rate.Limiter{}}
}

// notBefore reserves a slot for one job of org and returns when it may run.
func (l *orgLimiter) notBefore(org string, now time.Time) time.Time {
	if l == nil {
		return now
	}
	l.mu.Lock()
	lim, ok := l.orgs[org]
	if !ok {
		lim = rate.NewLimiter(l.rate, l.burst)
		l.orgs[org] = lim
	}
	r := lim.ReserveN(now, 1)
	l.mu.Unlock()
	return now.Add(r.DelayFrom(now))
}
