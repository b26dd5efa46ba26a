// Package logs is where jobs' output lives: ingest (an agent's upload is
// checked against its lease through the jobs service, ordered, cut into
// lines with their step and number, bounded by the per-job limit at a
// line boundary), storage behind Store (SQLite and PostgreSQL through
// internal/store/sqlstore, ClickHouse through internal/logs/clickhouse),
// and reading: the raw output after a cursor or a job's lines, each as a
// page or a live tail that follows a running job until it ends, and
// search across an org's jobs.
package logs

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/notify"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Config tunes the log service.
type Config struct {
	// MaxBytes bounds the output kept for one job (all its attempts);
	// past it the log ends with Notice. Zero: no limit.
	MaxBytes int64
	// PollInterval bounds how long a tail goes without reading the store
	// (in case a wake-up from another replica was lost).
	PollInterval time.Duration
	// Batch sets how uploads are batched into the store's writes while
	// Run runs (without it, each upload is its own write).
	Batch BatchConfig
}

// DefaultConfig is what `nimbus up` runs with.
func DefaultConfig() Config {
	return Config{MaxBytes: 64 << 20, PollInterval: time.Second, Batch: DefaultBatchConfig()}
}

// Options are the Service's dependencies.
type Options struct {
	Store Store
	// Jobs checks leases and jobs' states.
	Jobs   *jobs.Service
	Config Config
	// Notifier wakes tails when output arrives or a job ends: the same
	// one the jobs service notifies. Default: a new one.
	Notifier *notify.Notifier
	Logger   *slog.Logger
	// Registry takes the ingest's metrics (nil: none).
	Registry prometheus.Registerer
	Now      func() time.Time
}

// Service ingests and serves jobs' output. It is safe for concurrent use.
type Service struct {
	store  Store
	jobs   *jobs.Service
	cfg    Config
	notify *notify.Notifier
	log    *slog.Logger
	now    func() time.Time
	locks  keyedMutex
	batch  *batcher
	// batching: Run is running, uploads go through batch.
	batching atomic.Bool
	// states holds the state this process last wrote for each job (at
	// most maxCachedStates), so that an upload need not read it back;
	// a write from another replica shows as a conflict, which reads it.
	statesMu sync.Mutex
	states   map[string]State
	// recent holds the lines this process stored last for the jobs its
	// live tails follow.
	recent recentLines
}

const maxCachedStates = 10000

func (s *Service) cachedState(job string) (State, bool) {
	s.statesMu.Lock()
	defer s.statesMu.Unlock()
	st, ok := s.states[job]
	return st, ok
}

func (s *Service) cacheState(job string, st State, ok bool) {
	s.statesMu.Lock()
	defer s.statesMu.Unlock()
	if !ok {
		delete(s.states, job)
		return
	}
	if s.states == nil || len(s.states) >= maxCachedStates {
		s.states = map[string]State{}
	}
	s.states[job] = st
}

// New builds a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Jobs == nil {
		return nil, errors.New("logs: a store and the jobs service are needed")
	}
	if o.Config.MaxBytes < 0 {
		return nil, errors.New("logs: negative MaxBytes")
	}
	if o.Config.PollInterval <= 0 {
		o.Config.PollInterval = time.Second
	}
	if o.Notifier == nil {
		o.Notifier = notify.New()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{store: o.Store, jobs: o.Jobs, cfg: o.Config, notify: o.Notifier,
		log: o.Logger.With("component", "logs"), now: o.Now, batch: newBatcher(o.Store, o.Config.Batch, o.Registry)}, nil
}

// Run batches uploads into the store's writes (Config.Batch) until ctx
// ends. Without it, each upload is written on its own.
func (s *Service) Run(ctx context.Context) error {
	s.batching.Store(true)
	defer s.batching.Store(false)
	return s.batch.run(ctx)
}

// write stores w, through the batcher when it runs.
func (s *Service) write(ctx context.Context, w Write) error {
	if s.batching.Load() {
		if err := s.batch.write(ctx, w); !errors.Is(err, errBatcherClosed) {
			return err
		}
	}
	errs, err := s.store.Write(ctx, []Write{w})
	if err != nil {
		return err
	}
	return errs[0]
}

// Config returns the configuration in force.
func (s *Service) Config() Config { return s.cfg }

// Ack is the answer to an upload.
type Ack struct {
	// Seq: every chunk of the lease up to and including it is stored
	// (-1: none yet).
	Seq int64
	// Full: the job's log has reached Config.MaxBytes; nothing more will
	// be kept, and the agent may stop sending.
	Full bool
}

func ackOf(st State, fence int64) Ack {
	a := Ack{Seq: -1, Full: st.Full}
	if st.Cursor.Fence == fence {
		a.Seq = st.Cursor.Seq
	}
	return a
}

// Append stores chunks of a job's output that the agent sent under its
// lease (fence); their Seq and Data are used. end says the attempt's
// output is complete: its last line ends even without a newline.
//
// The lease is checked first, through the jobs service (store.ErrStaleFence,
// store.ErrFinished); the write itself is not in the jobs table's
// transaction. Chunks are applied in order, each once: those stored
// already are skipped, and a chunk after a gap is not taken (the ack
// says where the log is; the agent sends again from there). Uploads of
// one job are applied one at a time in this process; across replicas
// the store's compare-and-set on the cursor orders them.
func (s *Service) Append(ctx context.Context, agent store.Agent, job string, fence int64, chunks []Chunk, end bool) (Ack, error) {
	j, err := s.jobs.CheckLease(ctx, agent, job, fence)
	if err != nil {
		return Ack{}, err
	}
	unlock := s.locks.lock(job)
	defer unlock()
	repo := ""
	if j.GitHub != nil {
		repo = j.GitHub.Repo
	}
	in := ingest{org: j.OrgID, job: job, repo: repo, limit: s.cfg.MaxBytes}
	st, known := s.cachedState(job)
	cached := known
	wrote, conflicts := false, 0
	for {
		if !known {
			if st, err = s.store.State(ctx, j.OrgID, job); err != nil {
				return Ack{}, err
			}
			known, cached = true, false
		}
		fresh := nextChunks(st.Cursor, fence, chunks)
		finish := end && st.Cursor.Fence == fence && len(st.Pending) > 0 && !st.Full
		if len(fresh) == 0 && !finish {
			if cached && len(chunks) > 0 {
				// None of the upload follows the state this process
				// wrote last: another replica may have moved the log
				// on since (an agent's uploads spread over replicas),
				// and only the store knows. Without this look, an
				// upload after a gap would be answered from the stale
				// state for ever.
				known = false
				continue
			}
			if wrote {
				s.notify.Notify(jobs.Topic(job))
			}
			return ackOf(st, fence), nil
		}
		// An upload of many short lines is written in parts, so that one
		// job's flood never holds the store's writer for long.
		part := fresh
		if !st.Full {
			part = fresh[:linesPart(fresh, s.maxWriteLines())]
		}
		// Stores keep microseconds (and a tail may be shown the lines
		// from memory: recentLines).
		in.now = s.now().UTC().Truncate(time.Microsecond)
		w := in.apply(st, fence, part, end && len(part) == len(fresh))
		err := s.write(ctx, w)
		if errors.Is(err, ErrConflict) && conflicts < 3 {
			conflicts++
			known = false // another replica moved the log on: look again
			s.cacheState(job, State{}, false)
			continue
		}
		if err != nil {
			s.cacheState(job, State{}, false)
			return Ack{}, err
		}
		st, wrote, cached = w.State, true, false
		s.cacheState(job, st, true)
		s.recent.add(job, w.Lines)
	}
}

// maxWriteLines bounds the lines of one write.
func (s *Service) maxWriteLines() int {
	if s.cfg.Batch.Lines > 0 {
		return s.cfg.Batch.Lines
	}
	return DefaultBatchConfig().Lines
}

// linesPart is how many of chunks (at least one) hold at most max lines.
func linesPart(chunks []Chunk, max int) int {
	lines := 0
	for i, c := range chunks {
		lines += bytes.Count(c.Data, []byte{'\n'})
		if i > 0 && lines > max {
			return i
		}
	}
	return len(chunks)
}

// nextChunks returns the chunks of an upload (of lease fence) that
// continue the log after cursor, in order: those before are stored
// already, and one after a gap cannot be placed yet.
func nextChunks(cursor Cursor, fence int64, chunks []Chunk) []Chunk {
	var want int64
	switch {
	case fence == cursor.Fence:
		want = cursor.Seq + 1
	case fence > cursor.Fence:
		want = 0
	default:
		return nil // an older lease's: never placed
	}
	sorted := slices.SortedFunc(slices.Values(chunks), func(a, b Chunk) int { return cmp.Compare(a.Seq, b.Seq) })
	var out []Chunk
	for _, c := range sorted {
		switch {
		case c.Seq < want:
			continue
		case c.Seq > want:
			return out
		}
		out = append(out, c)
		want++
	}
	return out
}

// Follow calls fn with org's job's output after the cursor, in order, as
// it arrives, until the job has finished and everything is delivered
// (follow) or until what is stored now is delivered (!follow). It returns
// the context's error when the context ends first (notify.LongPoll).
func (s *Service) Follow(ctx context.Context, org, job string, after Cursor, follow bool, fn func([]Chunk) error) error {
	return s.follow(ctx, org, job, follow, func() (bool, error) {
		chunks, err := s.store.Read(ctx, org, job, after, followRead)
		if err != nil || len(chunks) == 0 {
			return false, err
		}
		last := chunks[len(chunks)-1]
		after = Cursor{Fence: last.Fence, Seq: last.Seq}
		return len(chunks) == followRead, fn(chunks)
	})
}

// FollowLines is Follow for the job's lines from q.From (of q.Step only,
// when set).
func (s *Service) FollowLines(ctx context.Context, org, job string, q LineQuery, follow bool, fn func([]Line) error) error {
	if q.From < 1 {
		q.From = 1
	}
	q.Limit = followRead
	defer s.recent.watch(job)()
	return s.follow(ctx, org, job, follow, func() (bool, error) {
		lines, ok := s.recent.get(org, job, q)
		if !ok {
			var err error
			if lines, err = s.store.Lines(ctx, org, job, q); err != nil {
				return false, err
			}
		}
		if len(lines) == 0 {
			return false, nil
		}
		q.From = lines[len(lines)-1].N + 1
		return len(lines) == followRead, fn(lines)
	})
}

// followRead is what one read of a follow asks for. A read that gets
// less has all there is for now: the next read waits for the next
// wake-up (a write notifies after it is stored, and LongPoll listens
// before it reads), which saves a live tail a store round trip a line.
const followRead = 1000

// follow calls read until it says there is no more, as output arrives,
// until the job has ended (follow) or at once (!follow).
func (s *Service) follow(ctx context.Context, org, job string, follow bool, read func() (more bool, err error)) error {
	if _, err := s.jobs.Get(ctx, org, job); err != nil {
		return err
	}
	drain := func() error {
		for {
			more, err := read()
			if err != nil || !more {
				return err
			}
		}
	}
	return s.notify.LongPoll(ctx, jobs.Topic(job), notify.Forever, s.cfg.PollInterval, func() (bool, error) {
		if err := drain(); err != nil || !follow {
			return true, err
		}
		j, err := s.jobs.Get(ctx, org, job)
		if err != nil || !j.State.Terminal() {
			return false, err
		}
		// Output may have landed between the read and the state check:
		// read once more before ending.
		return true, drain()
	})
}

// Search finds lines of org's jobs matching p, newest first.
func (s *Service) Search(ctx context.Context, org string, p SearchParams) (Result, error) {
	q, err := NewQuery(org, p, s.now())
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, q.Timeout)
	defer cancel()
	return s.store.Search(ctx, q)
}

// MaxTail is the most lines Tail returns.
const MaxTail = 1000

// Tail returns the last n lines (at most MaxTail) of org's job, in
// order: what a failed job printed last.
func (s *Service) Tail(ctx context.Context, org, job string, n int) ([]Line, error) {
	if _, err := s.jobs.Get(ctx, org, job); err != nil {
		return nil, err
	}
	n = min(max(n, 1), MaxTail)
	st, err := s.store.State(ctx, org, job)
	if err != nil {
		return nil, err
	}
	if st.Lines == 0 {
		return nil, nil
	}
	return s.store.Lines(ctx, org, job, LineQuery{From: max(st.Lines-int64(n)+1, 1), Limit: n})
}
