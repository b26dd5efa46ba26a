package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Relay carries notifications between the processes that share a database
// (PostgreSQL's LISTEN/NOTIFY): replicas of the control plane.
type Relay interface {
	// Publish sends each payload to every listening process, this one
	// included.
	Publish(ctx context.Context, payloads []string) error
	// Listen calls fn with each payload published, until ctx ends or the
	// connection fails.
	Listen(ctx context.Context, fn func(payload string)) error
}

// maxPayload keeps a payload under PostgreSQL's 8000-byte limit.
const maxPayload = 7000

// relayState is a Notifier's connection to other processes.
type relayState struct {
	origin  string // this process's tag, so it skips its own payloads
	mu      sync.Mutex
	pending map[string]bool
	kick    chan struct{}
}

// Connect relays n's notifications to the other processes on r and theirs
// to n's waiters, until ctx ends. Relaying is best effort and asynchronous
// (topics are batched): waiters still re-read their source of truth at a
// bounded interval, and a relay that fails is retried with backoff.
// Connect once, before the first Notify.
func (n *Notifier) Connect(ctx context.Context, r Relay, log *slog.Logger) {
	var tag [6]byte
	rand.Read(tag[:])
	rs := &relayState{origin: hex.EncodeToString(tag[:]), pending: map[string]bool{}, kick: make(chan struct{}, 1)}
	n.mu.Lock()
	n.relay = rs
	n.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); rs.publish(ctx, r, log) }()
	go func() { defer wg.Done(); n.listen(ctx, r, rs.origin, log) }()
	wg.Wait()
}

// queue adds a topic to the next batch.
func (rs *relayState) queue(topic string) {
	rs.mu.Lock()
	rs.pending[topic] = true
	rs.mu.Unlock()
	select {
	case rs.kick <- struct{}{}:
	default:
	}
}

func (rs *relayState) publish(ctx context.Context, r Relay, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-rs.kick:
		}
		rs.mu.Lock()
		topics := rs.pending
		rs.pending = map[string]bool{}
		rs.mu.Unlock()
		payloads := batch(rs.origin, topics)
		if err := r.Publish(ctx, payloads); err != nil && ctx.Err() == nil {
			log.Warn("relay notifications to other replicas", "err", err, "topics", len(topics))
		}
	}
}

// batch packs topics into payloads "<origin> <topic>\n<topic>…" of at most
// maxPayload bytes.
func batch(origin string, topics map[string]bool) []string {
	var out []string
	var b strings.Builder
	for t := range topics {
		if len(t) > maxPayload-len(origin)-2 {
			continue // no topic is this long
		}
		if b.Len() > 0 && b.Len()+1+len(t) > maxPayload {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() == 0 {
			b.WriteString(origin)
			b.WriteByte(' ')
		} else {
			b.WriteByte('\n')
		}
		b.WriteString(t)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

func (n *Notifier) listen(ctx context.Context, r Relay, origin string, log *slog.Logger) {
	for failures := 0; ; failures++ {
		start := time.Now()
		err := r.Listen(ctx, func(payload string) {
			from, topics, ok := strings.Cut(payload, " ")
			if !ok || from == origin {
				return
			}
			for t := range strings.SplitSeq(topics, "\n") {
				n.wake(t)
			}
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			failures = 0
		}
		log.Warn("listen for other replicas' notifications", "err", err, "failures", failures+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(time.Second<<min(failures, 5), 30*time.Second)):
		}
	}
}
