package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/executor"
)

// pattern is n bytes of numbered lines.
func pattern(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString(strings.Repeat("x", i%50))
		b.WriteString("\n")
	}
	return b.Bytes()[:n]
}

// TestSlowUploadsBlockTheWorkload drives the agent with a workload that
// writes faster than the server takes its output: the workload blocks, the
// agent holds at most MaxUnacked bytes, and nothing is lost.
func TestSlowUploadsBlockTheWorkload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxUnacked = 256 << 10
		out := pattern(4 << 20)
		var written atomic.Int64
		firehose := func(ctx context.Context, spec executor.Spec) int {
			for p := out; len(p) > 0; {
				n := min(len(p), 32<<10)
				if _, err := spec.Output.Write(p[:n]); err != nil {
					return 1
				}
				written.Add(int64(n))
				p = p[n:]
			}
			return 0
		}
		f := newFakeControlPlane(30 * time.Second)
		rec := record(funcExecutor(firehose))
		cfg, _ := testConfig(t, "http://nimbus.test", f, rec)
		cfg.HTTPClient = &http.Client{Transport: handlerTransport{f}}
		cfg.MaxUnacked = maxUnacked
		release := f.holdLogs()
		id := f.enqueue(fakeJobSpec{argv: []string{"firehose"}})
		startAgent(t, cfg)

		synctest.Wait() // everything blocked: the workload on its output
		if n := written.Load(); n == 0 || n > maxUnacked {
			t.Errorf("the workload wrote %d bytes while no upload was acknowledged; want at most %d", n, maxUnacked)
		}
		if rec.isRunning(id) != true {
			t.Error("the workload is not running")
		}
		release()
		v := f.waitFinished(t, id)
		if v.State != "succeeded" {
			t.Errorf("job %s, want succeeded", v.State)
		}
		got, whole := f.output(id, 1)
		if !whole || got != string(out) {
			t.Errorf("output: %d bytes (no gap: %v), want %d; first difference at %d", len(got), whole, len(out), firstDiff(got, string(out)))
		}
	})
}

// uploadServer is an in-memory end of a logStreamer's uploads.
type uploadServer struct {
	mu      sync.Mutex
	chunks  []apiv1.LogChunk
	fail    []error // answers forced on the next uploads
	maxAcks int     // when > 0: acknowledge at most this many new chunks per call
	// limit > 0: the log is full once it holds this many bytes (the
	// server keeps the chunk that crosses it and nothing after).
	limit int
	bytes int
	calls int
	// ends counts uploads marked as the workload's last; endOnly those
	// of them without chunks.
	ends, endOnly int
}

func (u *uploadServer) upload(_ context.Context, chunks []apiv1.LogChunk, end bool) (apiv1.LogsAck, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls++
	if end && len(u.fail) == 0 {
		u.ends++
		if len(chunks) == 0 {
			u.endOnly++
		}
	}
	if len(u.fail) > 0 {
		err := u.fail[0]
		u.fail = u.fail[1:]
		return apiv1.LogsAck{}, err
	}
	for _, c := range chunks {
		if c.Seq == int64(len(u.chunks)) && (u.maxAcks == 0 || c.Seq < chunks[0].Seq+int64(u.maxAcks)) {
			if u.limit == 0 || u.bytes < u.limit {
				u.bytes += len(c.Data)
			}
			u.chunks = append(u.chunks, c)
		}
	}
	return apiv1.LogsAck{Seq: int64(len(u.chunks)) - 1, Full: u.limit > 0 && u.bytes >= u.limit}, nil
}

func (u *uploadServer) sizes() []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []int
	for i, c := range u.chunks {
		if c.Seq != int64(i) || c.Fence != 7 {
			return nil
		}
		out = append(out, len(c.Data))
	}
	return out
}

func newTestStreamer(u *uploadServer) *logStreamer {
	return newLogStreamer(logStreamerOptions{
		fence: 7, upload: u.upload, maxChunk: 10, maxBatch: 25, maxUnacked: 1000,
		flushInterval: 250 * time.Millisecond, maxBackoff: time.Second, log: slog.New(slog.DiscardHandler),
	})
}

func TestLogStreamerChunks(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		// pauses[i] is the time to let pass after writes[i].
		pauses    []time.Duration
		fail      []error
		maxAcks   int
		wantSizes []int
	}{{
		name:      "cut by size",
		writes:    []string{strings.Repeat("a", 25)},
		wantSizes: []int{10, 10, 5},
	}, {
		name:      "cut by the flush interval",
		writes:    []string{"abc", "de", "fghij"},
		pauses:    []time.Duration{time.Second, 0, time.Second},
		wantSizes: []int{3, 7},
	}, {
		name:      "transient failures are retried in order",
		writes:    []string{strings.Repeat("b", 45)},
		fail:      []error{&apiclient.Error{Status: 500}, errors.New("connection reset"), &apiclient.Error{Status: 503}},
		wantSizes: []int{10, 10, 10, 10, 5},
	}, {
		name:      "partial acknowledgements resend the rest",
		writes:    []string{strings.Repeat("c", 50)},
		maxAcks:   1,
		wantSizes: []int{10, 10, 10, 10, 10},
	}, {
		name:      "no output, no chunk",
		wantSizes: nil,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				u := &uploadServer{fail: tt.fail, maxAcks: tt.maxAcks}
				s := newTestStreamer(u)
				done := make(chan error)
				go func() { done <- s.run(t.Context()) }()
				for i, w := range tt.writes {
					if _, err := s.Write([]byte(w)); err != nil {
						t.Fatal(err)
					}
					if i < len(tt.pauses) {
						time.Sleep(tt.pauses[i])
					}
				}
				s.finish()
				if err := <-done; err != nil {
					t.Fatalf("run: %v", err)
				}
				if diff := cmp.Diff(tt.wantSizes, u.sizes()); diff != "" {
					t.Errorf("chunk sizes (-want +got):\n%s", diff)
				}
				var got strings.Builder
				for _, c := range u.chunks {
					got.Write(c.Data)
				}
				if want := strings.Join(tt.writes, ""); got.String() != want {
					t.Errorf("uploaded %q, want %q", got.String(), want)
				}
				if unsent, dropped := s.lost(); unsent != 0 || dropped != 0 {
					t.Errorf("lost %d unsent and %d dropped bytes", unsent, dropped)
				}
			})
		})
	}
}

func TestLogStreamerStopsForGood(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"lease gone", &apiclient.Error{Status: 409, Code: apiv1.CodeStaleFence}},
		{"refused", &apiclient.Error{Status: 400, Code: apiv1.CodeBadRequest}},
		{"agent disabled", ErrUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				u := &uploadServer{fail: []error{tt.err}}
				s := newTestStreamer(u)
				done := make(chan error)
				go func() { done <- s.run(t.Context()) }()
				_, _ = s.Write([]byte(strings.Repeat("d", 15)))
				if err := <-done; !errors.Is(err, tt.err) {
					t.Fatalf("run: %v, want %v", err, tt.err)
				}
				// Writes no longer block, even past maxUnacked.
				if _, err := s.Write(make([]byte, 5000)); err != nil {
					t.Fatal(err)
				}
				unsent, dropped := s.lost()
				if unsent != 15 || dropped != 5000 {
					t.Errorf("lost %d unsent and %d dropped bytes; want 15 and 5000", unsent, dropped)
				}
			})
		})
	}
}

// Once the server says the job's log is full, the streamer sends nothing
// more: held and later output is discarded (counted apart from lost
// output), writes never block, and run ends when the workload does.
func TestLogStreamerStopsSendingWhenTheLogIsFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := &uploadServer{limit: 30}
		s := newTestStreamer(u)
		done := make(chan error)
		go func() { done <- s.run(t.Context()) }()
		for range 10 {
			s.Write([]byte(strings.Repeat("e", 10)))
			time.Sleep(time.Second) // uploaded at the flush
		}
		s.Write(make([]byte, 5000)) // past maxUnacked: must not block
		s.finish()
		if err := <-done; err != nil {
			t.Fatalf("run: %v", err)
		}
		u.mu.Lock()
		calls, sent := u.calls, len(u.chunks)
		u.mu.Unlock()
		if sent != 3 || calls != 3 {
			t.Errorf("%d chunks in %d uploads, want 3 in 3 (none after the log was full)", sent, calls)
		}
		if past := s.pastLimit(); past != 7*10+5000 {
			t.Errorf("%d bytes past the limit, want %d", past, 7*10+5000)
		}
		if unsent, dropped := s.lost(); unsent != 0 || dropped != 0 {
			t.Errorf("lost %d unsent, %d dropped; want none", unsent, dropped)
		}
	})
}

func TestLogStreamerAbortUnblocksWriters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// No run: nothing is ever acknowledged.
		s := newTestStreamer(&uploadServer{})
		wrote := make(chan error)
		go func() {
			_, err := s.Write(make([]byte, 1500))
			wrote <- err
		}()
		synctest.Wait()
		select {
		case err := <-wrote:
			t.Fatalf("Write past maxUnacked returned %v without blocking", err)
		default:
		}
		s.abortWrites()
		if err := <-wrote; err != nil {
			t.Fatalf("Write: %v", err)
		}
		if _, dropped := s.lost(); dropped != 500 {
			t.Errorf("dropped %d bytes, want the 500 past maxUnacked", dropped)
		}
	})
}

func TestJobIsCompletedAfterTheLogDrainTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeControlPlane(30 * time.Second)
		writeOnce := func(_ context.Context, spec executor.Spec) int {
			_, _ = spec.Output.Write([]byte("never acknowledged\n"))
			return 0
		}
		rec := record(funcExecutor(writeOnce))
		cfg, logs := testConfig(t, "http://nimbus.test", f, rec)
		cfg.HTTPClient = &http.Client{Transport: handlerTransport{f}}
		var faults []fault
		for range 1000 {
			faults = append(faults, fault{status: 500})
		}
		f.failNext("logs", faults...)
		id := f.enqueue(fakeJobSpec{argv: []string{"write"}})
		startAgent(t, cfg)
		time.Sleep(cfg.withDefaults().LogDrainTimeout + time.Second)
		synctest.Wait()
		v := f.view(id)
		if len(v.Completes) != 1 || v.State != "succeeded" {
			t.Errorf("job %+v; want it completed once the drain timed out", v)
		}
		if !strings.Contains(logs.String(), `msg="job output lost" component=agent agent_id=agent-1 job_id=job-1 fence=1 slot=0 unsent_bytes=19`) {
			t.Errorf("the agent did not log the lost output:\n%s", logs)
		}
	})
}

func TestLogUploadRefusedForAStaleFenceKillsTheWorkload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeControlPlane(30 * time.Second)
		ra, rec := syncTestAgent(t, f, blockUntilStopped)
		f.failNext("logs", fault{status: http.StatusConflict})
		id := f.enqueue(fakeJobSpec{argv: []string{"work"}})
		time.Sleep(time.Second)
		synctest.Wait()
		res := rec.results(id)
		if len(res) != 1 || !errors.Is(res[0].Cause, ErrLeaseLost) {
			t.Errorf("executor results %+v; want the workload killed with ErrLeaseLost", res)
		}
		if n := f.callCount("complete"); n != 0 {
			t.Errorf("%d complete calls for a lost lease", n)
		}
		if ra.returned() {
			t.Errorf("Run returned: %v", ra.err)
		}
	})
}

// The workload's last chunks go with end, so that the server ends its
// last line; output that ended with everything acknowledged and without
// a newline gets an upload of its own to say so.
func TestLogStreamerSaysTheEnd(t *testing.T) {
	for _, tc := range []struct {
		name           string
		writes         []string
		wantEndOnly    int
		flushBeforeEnd bool
	}{
		{"ends with a newline", []string{"a\n", "b\n"}, 0, false},
		{"ends mid-line", []string{"a\n", "half"}, 0, false},
		{"ends mid-line, all sent before", []string{"a\n", "half"}, 1, true},
		{"ends with a newline, all sent before", []string{"a\n", "b\n"}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &uploadServer{}
			s := newTestStreamer(u)
			done := make(chan error, 1)
			go func() { done <- s.run(context.Background()) }()
			for _, w := range tc.writes {
				s.Write([]byte(w))
			}
			if tc.flushBeforeEnd {
				s.flush()
				waitUntil(t, func() bool {
					s.mu.Lock()
					defer s.mu.Unlock()
					return s.queue.len() == 0 && len(s.open) == 0
				})
			}
			s.finish()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			u.mu.Lock()
			defer u.mu.Unlock()
			wantEnds := 1
			if tc.flushBeforeEnd && tc.wantEndOnly == 0 {
				wantEnds = 0
			}
			if u.ends != wantEnds || u.endOnly != tc.wantEndOnly {
				t.Errorf("%d uploads with end, %d without chunks; want %d, %d", u.ends, u.endOnly, wantEnds, tc.wantEndOnly)
			}
		})
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A chunk holds at most maxChunkLines lines, cut after a newline: the
// server writes a chunk at once, and must not hold its store's writer
// for seconds on one chunk of short lines.
func TestLogStreamerCutsManyShortLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := &uploadServer{}
		s := newLogStreamer(logStreamerOptions{
			fence: 7, upload: u.upload, maxChunk: 64 << 10, maxBatch: 512 << 10, maxUnacked: 1 << 20,
			flushInterval: 250 * time.Millisecond, maxBackoff: time.Second, log: slog.New(slog.DiscardHandler),
		})
		done := make(chan error)
		go func() { done <- s.run(t.Context()) }()
		in := strings.Repeat("x\n", 2*maxChunkLines+500) + "tail"
		if _, err := s.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		s.finish()
		if err := <-done; err != nil {
			t.Fatalf("run: %v", err)
		}
		var got strings.Builder
		var lines []int
		for _, c := range u.chunks {
			got.Write(c.Data)
			lines = append(lines, strings.Count(string(c.Data), "\n"))
		}
		if got.String() != in {
			t.Errorf("uploaded %d bytes, not what was written", got.Len())
		}
		if want := []int{maxChunkLines, maxChunkLines, 500}; !slices.Equal(lines, want) {
			t.Errorf("lines per chunk %v, want %v", lines, want)
		}
	})
}
