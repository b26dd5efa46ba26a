package agent

import (
	"context"
	"testing"
)

// Jobs get the lowest free slot, also when the slot held while waiting for
// the lease is a higher one: warm sandboxes are kept for the first slots.
func TestSlotPoolLowestFirst(t *testing.T) {
	p := newSlotPool(3)
	ctx := context.Background()
	a, _ := p.acquire(ctx)
	b, _ := p.acquire(ctx)
	if a != 0 || b != 1 {
		t.Fatalf("acquired %d and %d, want 0 and 1", a, b)
	}
	// Slot 1 waits for a lease while slot 0's job ends: the lease goes to 0.
	p.release(a)
	if got := p.lowest(b); got != 0 {
		t.Fatalf("lowest(1) = %d with 0 free, want 0", got)
	}
	// Slot 1 is free again; 0 and 2 are taken.
	c, _ := p.acquire(ctx)
	d, _ := p.acquire(ctx)
	if c != 1 || d != 2 {
		t.Fatalf("acquired %d and %d, want 1 and 2", c, d)
	}
	if got := p.lowest(d); got != 2 {
		t.Fatalf("lowest(2) with none lower free = %d", got)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.acquire(cctx); err == nil {
		t.Fatal("acquired a fourth slot of three")
	}
}
