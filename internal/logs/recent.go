package logs

import (
	"strings"
	"sync"
)

// recentLines keeps, for each job that a live tail in this process
// follows, the lines this process stored for it last, so that the tail's
// reads after a write take them from memory and not from the store: a
// round trip less for every line a tail shows (on ClickHouse, a query
// under load), and none at all for the second and later tails of a job.
//
// Only lines of writes that succeeded (their state landed) go in, in the
// order of their numbers, which are never reused: a line stored is the
// line the store returns for its number. What another replica stored is
// not here; a run of lines that does not continue the kept ones (a gap)
// replaces them, and a read from before or past what is kept goes to the
// store, so a tail misses nothing another replica wrote (its wake-up
// comes through the notifier).
type recentLines struct {
	mu   sync.Mutex
	jobs map[string]*jobLines
}

type jobLines struct {
	tails int
	lines []Line // consecutive numbers, oldest first
}

// maxRecent is the most lines kept for one job: two of a tail's reads.
const maxRecent = 2 * followRead

// watch starts keeping job's lines, until the returned func is called
// (once for each watch).
func (r *recentLines) watch(job string) (unwatch func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jobs == nil {
		r.jobs = map[string]*jobLines{}
	}
	j := r.jobs[job]
	if j == nil {
		j = &jobLines{}
		r.jobs[job] = j
	}
	j.tails++
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if j.tails--; j.tails == 0 {
			delete(r.jobs, job)
		}
	}
}

// add records lines just stored for job (consecutive, in order), if a
// tail watches it.
func (r *recentLines) add(job string, lines []Line) {
	if len(lines) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	j := r.jobs[job]
	if j == nil {
		return
	}
	if n := len(j.lines); n == 0 || j.lines[n-1].N+1 != lines[0].N {
		j.lines = j.lines[:0] // a gap: what is kept must be consecutive
	}
	if len(lines) > maxRecent {
		lines = lines[len(lines)-maxRecent:]
	}
	for _, l := range lines {
		// A line's text may be a piece of its whole chunk (ingest):
		// kept on its own, so that what is kept is the lines' size.
		l.Text = strings.Clone(l.Text)
		j.lines = append(j.lines, l)
	}
	if over := len(j.lines) - maxRecent; over > 0 {
		j.lines = append(j.lines[:0:0], j.lines[over:]...)
	}
}

// get returns the lines of org's job from q.From (of q.Step only, when
// set), at most q.Limit, when they are here: ok is false when q.From is
// not among the lines kept (the store has them, or, past them, may have
// lines another replica stored).
func (r *recentLines) get(org, job string, q LineQuery) (out []Line, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := r.jobs[job]
	if j == nil || len(j.lines) == 0 || j.lines[0].Org != org {
		return nil, false
	}
	first, last := j.lines[0].N, j.lines[len(j.lines)-1].N
	if q.From < first || q.From > last {
		return nil, false
	}
	for _, l := range j.lines[q.From-first:] {
		if len(out) == q.Limit {
			break
		}
		if q.Step == "" || l.Step == q.Step {
			out = append(out, l)
		}
	}
	return out, true
}
