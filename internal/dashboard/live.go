package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/nimbus-build/nimbus/internal/jobs"
)

// Live pages are Server-Sent Events streams woken by the jobs service's
// notifications (jobs.OrgTopic for a list, jobs.Topic for one job; across
// replicas through the notifier's relay). A stream re-reads what it shows
// when woken (after a short pause that gathers a burst of changes into
// one read) and at least every idleRefresh, and sends it only when it
// changed. Streams of the same org and filter share their reads (hub).
const (
	coalesce    = 250 * time.Millisecond
	idleRefresh = 15 * time.Second
	// queuedRefresh: a queued job's reason to wait changes with the
	// agents, which notify nothing.
	queuedRefresh = 5 * time.Second
	// heartbeat keeps idle connections from being cut by proxies.
	heartbeat = 25 * time.Second
)

// hub shares the live lists' reads between the streams that show the
// same thing: a read is reused for coalesce after it was made.
type hub struct {
	s     *Server
	group singleflight.Group
	mu    sync.Mutex
	cache map[string]hubEntry
}

type hubEntry struct {
	html string
	at   time.Time
}

func newHub(s *Server) *hub { return &hub{s: s, cache: map[string]hubEntry{}} }

// rows returns the rendered rows of org's first page of f.
func (h *hub) rows(ctx context.Context, org string, f jobFilter) (string, error) {
	key := org + "?" + f.query().Encode()
	h.mu.Lock()
	e, ok := h.cache[key]
	h.mu.Unlock()
	if ok && time.Since(e.at) < coalesce {
		return e.html, nil
	}
	v, err, _ := h.group.Do(key, func() (any, error) {
		d, err := h.s.jobsData(context.WithoutCancel(ctx), org, f)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := h.s.pages.byName["jobs"].ExecuteTemplate(&buf, "jobrows", d); err != nil {
			return "", err
		}
		html := buf.String()
		h.mu.Lock()
		if len(h.cache) > 1000 {
			clear(h.cache)
		}
		h.cache[key] = hubEntry{html: html, at: time.Now()}
		h.mu.Unlock()
		return html, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// sse is one Server-Sent Events stream.
type sse struct {
	w http.ResponseWriter
	f http.Flusher
}

func startSSE(w http.ResponseWriter) (*sse, error) {
	f, ok := w.(http.Flusher)
	if !ok {
		return nil, fmt.Errorf("streaming is not supported by this connection")
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f.Flush()
	return &sse{w: w, f: f}, nil
}

// send writes one event whose data is v as JSON (one line), with an id
// when given.
func (e *sse) send(event, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if id != "" {
		buf.WriteString("id: " + id + "\n")
	}
	buf.WriteString("event: " + event + "\ndata: ")
	buf.Write(b)
	buf.WriteString("\n\n")
	if _, err := e.w.Write(buf.Bytes()); err != nil {
		return err
	}
	e.f.Flush()
	return nil
}

func (e *sse) comment() error {
	if _, err := e.w.Write([]byte(": keep-alive\n\n")); err != nil {
		return err
	}
	e.f.Flush()
	return nil
}

// follow runs a live stream: render is called at once, then after each
// wake-up of topic (gathered for coalesce) and at least every refresh;
// it returns done to end the stream.
func (s *Server) follow(ctx context.Context, e *sse, topic string, refresh func() time.Duration, render func() (done bool, err error)) error {
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	for {
		woken := s.Wait(topic)
		done, err := render()
		if err != nil || done {
			return err
		}
		t := time.NewTimer(refresh())
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-beat.C:
				if err := e.comment(); err != nil {
					t.Stop()
					return err
				}
			case <-t.C:
				break wait
			case <-woken:
				t.Stop()
				pause := time.NewTimer(coalesce)
				select {
				case <-ctx.Done():
					pause.Stop()
					return ctx.Err()
				case <-pause.C:
				}
				break wait
			}
		}
	}
}

// jobsLive streams the first page of the jobs list as it changes: an
// event "rows" carries the table's rows, rendered as the page renders
// them.
func (s *Server) jobsLive(w http.ResponseWriter, r *http.Request, c *call) error {
	f, err := parseJobFilter(r.URL.Query())
	if err != nil {
		return err
	}
	f.Before = ""
	org := c.Session.Org
	if _, err := s.hub.rows(r.Context(), org, f); err != nil {
		return err
	}
	e, err := startSSE(w)
	if err != nil {
		return err
	}
	last := ""
	return s.follow(r.Context(), e, jobs.OrgTopic(org), func() time.Duration { return idleRefresh }, func() (bool, error) {
		html, err := s.hub.rows(r.Context(), org, f)
		if err != nil || html == last {
			return false, err
		}
		last = html
		return false, e.send("rows", "", map[string]string{"html": html})
	})
}

// jobLive streams the job page's summary (state, timing, why it waits)
// until the job has finished: events "job" with the rendered panel, then
// "end".
func (s *Server) jobLive(w http.ResponseWriter, r *http.Request, c *call) error {
	ctx := r.Context()
	id := r.PathValue("id")
	d, err := s.jobData(ctx, c, id)
	if err != nil {
		return err
	}
	e, err := startSSE(w)
	if err != nil {
		return err
	}
	last := ""
	refresh := func() time.Duration {
		if d.Row.Job.State == "queued" {
			return queuedRefresh
		}
		return idleRefresh
	}
	return s.follow(ctx, e, jobs.Topic(id), refresh, func() (bool, error) {
		var err error
		if d, err = s.jobData(ctx, c, id); err != nil {
			return false, err
		}
		var buf bytes.Buffer
		if err := s.pages.byName["job"].ExecuteTemplate(&buf, "jobpanel", d); err != nil {
			return false, err
		}
		if html := buf.String(); html != last {
			last = html
			if err := e.send("job", "", map[string]string{"html": html, "state": string(d.Row.Job.State)}); err != nil {
				return false, err
			}
		}
		if !d.Live {
			return true, e.send("end", "", map[string]string{"state": string(d.Row.Job.State)})
		}
		return false, nil
	})
}
