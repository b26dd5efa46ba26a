package api

import (
	"errors"
	"runtime/debug"
	"sync"
	"time"
)

// Why a body was refused by the budget.
var (
	errOpenBodiesFull   = errors.New("too many unauthenticated request bodies in flight")
	errClientBodiesFull = errors.New("too many unauthenticated request bodies in flight from this address")
)

const (
	// smallBody is the size up to which a body may use the budget's
	// reserve.
	smallBody = 1 << 20
	// bigBody is the size of a body after which memory is handed back to
	// the operating system once the budget is idle again.
	bigBody = 4 << 20
)

// bodyBudget accounts the bytes of unauthenticated bodies in flight,
// server-wide and per client address. It never blocks: a body that does
// not fit is refused, so that a flood is shed at once instead of queueing
// (GitHub gets its answer fast either way).
type bodyBudget struct {
	total, perClient, reserve int64

	mu       sync.Mutex
	used     int64
	byClient map[string]int64
	// sawBig: a big body was released since memory was last returned.
	sawBig   bool
	freeing  bool
	lastFree time.Time
	// free returns memory to the operating system (debug.FreeOSMemory).
	free   func()
	report func(used int64)
}

func newBodyBudget(total, perClient int64, report func(int64)) *bodyBudget {
	reserve := max(total/8, smallBody)
	if reserve >= total {
		reserve = 0
	}
	return &bodyBudget{total: total, perClient: perClient, reserve: reserve, byClient: map[string]int64{},
		free: debug.FreeOSMemory, report: report}
}

// acquire charges n bytes to client, or says why it cannot.
func (b *bodyBudget) acquire(client string, n int64) (release func(), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.perClient > 0 && b.byClient[client]+n > b.perClient {
		return nil, errClientBodiesFull
	}
	if b.total > 0 {
		limit := b.total
		if n > smallBody {
			limit -= b.reserve
		}
		if b.used+n > limit {
			return nil, errOpenBodiesFull
		}
	}
	b.used += n
	b.byClient[client] += n
	b.reportLocked()
	var once sync.Once
	return func() { once.Do(func() { b.release(client, n) }) }, nil
}

func (b *bodyBudget) release(client string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.byClient[client] -= n; b.byClient[client] <= 0 {
		delete(b.byClient, client)
	}
	b.reportLocked()
	if n >= bigBody {
		b.sawBig = true
	}
	// The buffers of big bodies are garbage now; once no body is in
	// flight, hand their memory back (at most once a second) instead of
	// keeping the process at its peak size.
	if b.used == 0 && b.sawBig && !b.freeing {
		b.freeing = true
		wait := time.Until(b.lastFree.Add(time.Second))
		time.AfterFunc(max(wait, 0), b.returnMemory)
	}
}

func (b *bodyBudget) returnMemory() {
	b.mu.Lock()
	b.sawBig = false
	b.mu.Unlock()
	b.free()
	b.mu.Lock()
	b.freeing, b.lastFree = false, time.Now()
	b.mu.Unlock()
}

func (b *bodyBudget) reportLocked() {
	if b.report != nil {
		b.report(b.used)
	}
}
