package warmpool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sandboxes is a fake executor's: numbered sandboxes, some failing to be
// made, some dying while they wait.
type sandboxes struct {
	mu        sync.Mutex
	made      int
	failNext  int
	dead      map[int]bool
	destroyed map[int]bool
	making    int // at once
	maxMaking int
}

func (s *sandboxes) funcs() Funcs[int] {
	return Funcs[int]{
		Make: func(ctx context.Context, k Key) (int, error) {
			s.mu.Lock()
			s.making++
			s.maxMaking = max(s.maxMaking, s.making)
			fail := s.failNext > 0
			if fail {
				s.failNext--
			}
			s.mu.Unlock()
			time.Sleep(time.Millisecond) // overlap, were two made at once
			s.mu.Lock()
			defer s.mu.Unlock()
			s.making--
			if fail {
				return 0, errors.New("no room")
			}
			s.made++
			return s.made, nil
		},
		Alive: func(_ context.Context, v int) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.dead[v] {
				return errors.New("dead")
			}
			return nil
		},
		Destroy: func(v int) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.destroyed[v] = true
		},
	}
}

func waitFull(t *testing.T, p *Pool[int]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.WaitFull(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPool(t *testing.T) {
	retryMin = 10 * time.Millisecond
	s := &sandboxes{dead: map[int]bool{}, destroyed: map[int]bool{}, failNext: 2}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	keys := []Key{{"p", 0}, {"p", 1}, {"p", 2}}
	p := New(keys, s.funcs(), m, nil)
	waitFull(t, p)
	if got := value(m.failed.WithLabelValues("p")); got != 2 {
		t.Errorf("failures = %v, want 2 (retried)", got)
	}
	if got := m.Ready("p"); got != 3 {
		t.Errorf("ready = %v, want 3", got)
	}

	// A take hands out the slot's sandbox once; the next take of the slot
	// before the refill misses, and never gets the same one twice.
	v, ok := p.Take(t.Context(), Key{"p", 1})
	if !ok {
		t.Fatal("no sandbox for slot 1")
	}
	waitFull(t, p)
	w, ok := p.Take(t.Context(), Key{"p", 1})
	if !ok || w == v {
		t.Fatalf("second take: %d %v, first %d", w, ok, v)
	}
	// Not a pool key: a miss without a count (the executor counts those
	// with Miss).
	if _, ok := p.Take(t.Context(), Key{"p", 7}); ok {
		t.Fatal("took a sandbox for a slot without one")
	}
	// A sandbox that died while waiting is destroyed, not handed out.
	waitFull(t, p)
	p.mu.Lock()
	d := p.ready[Key{"p", 0}]
	p.mu.Unlock()
	s.mu.Lock()
	s.dead[d] = true
	s.mu.Unlock()
	if _, ok := p.Take(t.Context(), Key{"p", 0}); ok {
		t.Fatal("took a dead sandbox")
	}
	// The pool's maker goes on refilling meanwhile: s is read under its
	// lock.
	s.mu.Lock()
	destroyed, maxMaking := s.destroyed[d], s.maxMaking
	s.mu.Unlock()
	if !destroyed {
		t.Fatal("the dead sandbox was not destroyed")
	}
	if hits, misses := m.Takes("p", "hit"), m.Takes("p", "miss"); hits != 2 || misses != 1 {
		t.Errorf("hits %v misses %v, want 2 and 1", hits, misses)
	}
	if maxMaking != 1 {
		t.Errorf("%d sandboxes made at once, want 1", maxMaking)
	}

	// Close destroys every ready one; the pool makes no more.
	waitFull(t, p)
	p.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.destroyed) != s.made-2 { // all but the two taken
		t.Fatalf("made %d, destroyed %d, taken 2", s.made, len(s.destroyed))
	}
	if got := m.Ready("p"); got != 0 {
		t.Errorf("ready after Close = %v", got)
	}
}

// A nil pool (none configured) takes nothing and waits for nothing.
func TestNilPool(t *testing.T) {
	var p *Pool[int]
	if _, ok := p.Take(t.Context(), Key{"p", 0}); ok || p.Has(Key{"p", 0}) {
		t.Fatal("a nil pool handed out a sandbox")
	}
	p.Miss("p")
	if err := p.WaitFull(t.Context()); err != nil {
		t.Fatal(err)
	}
	p.Close()
}
