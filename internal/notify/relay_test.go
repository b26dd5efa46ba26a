package notify

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// bus is an in-memory Relay: every listener gets every payload.
type bus struct {
	mu        sync.Mutex
	listeners []chan string
	published int
}

func (b *bus) Publish(ctx context.Context, payloads []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published += len(payloads)
	for _, l := range b.listeners {
		for _, p := range payloads {
			l <- p
		}
	}
	return nil
}

func (b *bus) Listen(ctx context.Context, fn func(string)) error {
	ch := make(chan string, 1024)
	b.mu.Lock()
	b.listeners = append(b.listeners, ch)
	b.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case p := <-ch:
			fn(p)
		}
	}
}

func (b *bus) listening() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.listeners)
}

func TestRelayWakesOtherProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &bus{}
	n1, n2 := New(), New()
	log := slog.New(slog.DiscardHandler)
	go n1.Connect(ctx, b, log)
	go n2.Connect(ctx, b, log)
	for b.listening() < 2 {
		time.Sleep(time.Millisecond)
	}
	w := n2.Wait("job:1")
	other := n2.Wait("job:2")
	n1.Notify("job:1")
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("waiter in the other process not woken")
	}
	select {
	case <-other:
		t.Fatal("another topic's waiter woken")
	default:
	}
	// A process's own notifications come back on the relay and are
	// skipped: its waiters were woken locally already, once.
	own := n1.Wait("job:3")
	n1.Notify("job:3")
	<-own
	again := n1.Wait("job:3")
	time.Sleep(50 * time.Millisecond)
	select {
	case <-again:
		t.Fatal("a process's own relayed notification woke a later waiter")
	default:
	}
}

func TestBatchFitsPayloads(t *testing.T) {
	topics := map[string]bool{}
	for i := range 2000 {
		topics[fmt.Sprintf("job:job_%026d", i)] = true
	}
	topics[strings.Repeat("x", maxPayload)] = true // cannot be sent; dropped
	payloads := batch("origin", topics)
	if len(payloads) < 2 {
		t.Fatalf("%d payloads for 2000 topics", len(payloads))
	}
	got := map[string]bool{}
	for _, p := range payloads {
		if len(p) > maxPayload {
			t.Errorf("payload of %d bytes", len(p))
		}
		from, rest, ok := strings.Cut(p, " ")
		if !ok || from != "origin" {
			t.Fatalf("payload without origin: %.40q", p)
		}
		for tp := range strings.SplitSeq(rest, "\n") {
			got[tp] = true
		}
	}
	if len(got) != 2000 {
		t.Errorf("%d topics delivered, want 2000", len(got))
	}
}
