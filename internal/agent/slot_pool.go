package agent

import (
	"context"
	"sync"
)

// slotPool hands out job slots 0..n-1: a job holds one from its lease until
// it is completed, and the agent asks for a job only while one is free.
// Jobs get the lowest free slot (lowest): the first slots are the ones an
// executor keeps warm sandboxes for.
type slotPool struct {
	tokens chan struct{} // one per free slot

	mu   sync.Mutex
	free []bool // by slot
}

func newSlotPool(n int) *slotPool {
	p := &slotPool{tokens: make(chan struct{}, n), free: make([]bool, n)}
	for i := range n {
		p.free[i] = true
		p.tokens <- struct{}{}
	}
	return p
}

// acquire waits for a free slot and takes the lowest.
func (p *slotPool) acquire(ctx context.Context) (int, error) {
	select {
	case <-p.tokens:
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, f := range p.free {
		if f {
			p.free[i] = false
			return i, nil
		}
	}
	panic("slot pool: a token without a free slot")
}

// lowest exchanges held for the lowest free slot when that is lower (one
// freed while held waited for a lease), and returns the slot now held.
func (p *slotPool) lowest(held int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range held {
		if p.free[i] {
			p.free[i], p.free[held] = false, true
			return i
		}
	}
	return held
}

// release gives a slot back.
func (p *slotPool) release(slot int) {
	p.mu.Lock()
	p.free[slot] = true
	p.mu.Unlock()
	p.tokens <- struct{}{}
}
