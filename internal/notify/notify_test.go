package notify

import (
	"testing"
	"time"
)

func TestWaitNotify(t *testing.T) {
	n := New()
	a, b := n.Wait("x"), n.Wait("y")
	n.Notify("x")
	select {
	case <-a:
	case <-time.After(time.Second):
		t.Fatal("waiter of x not woken")
	}
	select {
	case <-b:
		t.Fatal("waiter of y woken by x")
	default:
	}
	// A new wait after a notify waits for the next one.
	c := n.Wait("x")
	select {
	case <-c:
		t.Fatal("new waiter woken by an old notify")
	default:
	}
	n.Notify("nobody-waits")
}
