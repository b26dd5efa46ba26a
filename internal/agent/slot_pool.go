package agent

import "context"

// slotPool hands out job slots 0..n-1: a job holds one from its lease until
// it is completed, and the agent asks for a job only while one is free.
type slotPool struct {
	free chan int
}

func newSlotPool(n int) *slotPool {
	p := &slotPool{free: make(chan int, n)}
	for i := range n {
		p.free <- i
	}
	return p
}

// acquire waits for a free slot.
func (p *slotPool) acquire(ctx context.Context) (int, error) {
	select {
	case s := <-p.free:
		return s, nil
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
}

// release gives a slot back.
func (p *slotPool) release(slot int) { p.free <- slot }
