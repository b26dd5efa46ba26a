package logs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// batchStore keeps what it is given and records each Write's batch; with
// a gate, writes wait until it is opened.
type batchStore struct {
	mu      sync.Mutex
	batches [][]Write
	gate    chan struct{}
	entered chan struct{}
}

func (s *batchStore) State(context.Context, string, string) (State, error) { return State{}, nil }
func (s *batchStore) Read(context.Context, string, string, Cursor, int) ([]Chunk, error) {
	return nil, nil
}
func (s *batchStore) Lines(context.Context, string, string, LineQuery) ([]Line, error) {
	return nil, nil
}
func (s *batchStore) Search(context.Context, Query) (Result, error) { return Result{}, nil }

func (s *batchStore) Write(_ context.Context, ws []Write) ([]error, error) {
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, ws)
	return make([]error, len(ws)), nil
}

func (s *batchStore) sizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, b := range s.batches {
		out = append(out, len(b))
	}
	return out
}

func linesWrite(job string, n int, bytes int) Write {
	w := Write{Org: "org_a", Job: job}
	for i := range n {
		w.Lines = append(w.Lines, Line{N: int64(i + 1), Text: "x"})
	}
	if bytes > 0 {
		w.Chunks = []Chunk{{Data: make([]byte, bytes)}}
	}
	return w
}

// Uploads gather into one write until the batch's delay has passed or it
// holds the batch's lines; the write that fills it goes at once.
func TestBatcherThresholds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &batchStore{}
		b := newBatcher(st, BatchConfig{Lines: 10, Bytes: 1 << 30, Delay: 50 * time.Millisecond}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- b.run(ctx) }()
		write := func(n int, w Write) *sync.WaitGroup {
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					w := w
					w.Job = fmt.Sprintf("job_%d", i)
					if err := b.write(ctx, w); err != nil {
						t.Error(err)
					}
				})
			}
			return &wg
		}
		wg := write(3, linesWrite("", 2, 0))
		synctest.Wait()
		if got := st.sizes(); len(got) != 0 {
			t.Fatalf("written before the delay: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
		wg.Wait()
		if got := st.sizes(); len(got) != 1 || got[0] != 3 {
			t.Fatalf("batches %v, want one of 3 writes after the delay", got)
		}
		// 12 lines: the first 10 go at once, the last 2 after the delay.
		wg = write(6, linesWrite("", 2, 0))
		synctest.Wait()
		if got := st.sizes(); len(got) != 2 || got[1] != 5 {
			t.Fatalf("batches %v, want a full batch of 5 writes at once", got)
		}
		time.Sleep(50 * time.Millisecond)
		wg.Wait()
		if got := st.sizes(); len(got) != 3 || got[2] != 1 {
			t.Fatalf("batches %v, want the rest after the delay", got)
		}
		cancel()
		<-done
	})
}

// A full queue refuses an upload at once (ErrBusy) rather than growing;
// large uploads leave room for small ones; what is taken is written.
func TestBatcherRefusesWhenFull(t *testing.T) {
	st := &batchStore{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	b := newBatcher(st, BatchConfig{QueueBytes: 3 << 20}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.run(ctx)
	results := make(chan error, 10)
	go func() { results <- b.write(ctx, linesWrite("big1", 1, 2<<20)) }()
	<-st.entered // big1 is being written
	if err := b.write(ctx, linesWrite("big2", 1, 2<<20)); !errors.Is(err, ErrBusy) {
		t.Errorf("a second large upload while the queue holds 2 MiB of 3: %v, want ErrBusy", err)
	}
	go func() { results <- b.write(ctx, linesWrite("small", 1, 512<<10)) }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.pending) == 1 })
	if err := b.write(ctx, linesWrite("small2", 1, 600<<10)); !errors.Is(err, ErrBusy) {
		t.Errorf("a small upload past the whole queue: %v, want ErrBusy", err)
	}
	close(st.gate)
	for range 2 {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	if got := st.sizes(); len(got) != 2 {
		t.Errorf("batches %v, want big1 then small", got)
	}
	if err := b.write(ctx, linesWrite("big3", 1, 2<<20)); err != nil {
		t.Errorf("a large upload once the queue drained: %v", err)
	}
}

// When the batcher stops, what is queued is still written; later writes
// are told to go on their own.
func TestBatcherDrainsOnStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &batchStore{}
		b := newBatcher(st, BatchConfig{Delay: time.Hour}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- b.run(ctx) }()
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				if err := b.write(ctx, linesWrite(fmt.Sprint(i), 1, 0)); err != nil {
					t.Error(err)
				}
			})
		}
		synctest.Wait()
		cancel()
		<-done
		wg.Wait()
		if got := st.sizes(); len(got) != 1 || got[0] != 4 {
			t.Errorf("batches %v, want the 4 queued writes", got)
		}
		if err := b.write(context.Background(), linesWrite("late", 1, 0)); !errors.Is(err, errBatcherClosed) {
			t.Errorf("after stop: %v", err)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
