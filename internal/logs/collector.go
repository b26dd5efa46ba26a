package logs

import (
	"regexp"
	"slices"
)

// Collector makes a search's Result from candidate lines, which a store
// feeds it newest first (by time, then job, then line number, both
// descending): it checks each against the pattern, keeps the first
// Query.Limit matches and counts every job's, and says when the store
// should stop (the query's scan bound). Stores use it so that every one
// of them answers a query alike.
type Collector struct {
	q       Query
	re      *regexp.Regexp
	res     Result
	jobs    map[string]int // index in res.Jobs
	scanned int
	bytes   int
}

// NewCollector starts the result of q (built by NewQuery, so its pattern
// compiles).
func NewCollector(q Query) *Collector {
	return &Collector{q: q, re: regexp.MustCompile(q.Pattern), jobs: map[string]int{}}
}

// Add examines one candidate line and reports whether to go on.
func (c *Collector) Add(l Line) bool {
	c.scanned++
	if l.Org == c.q.Org && c.re.MatchString(l.Text) {
		i, ok := c.jobs[l.Job]
		if !ok {
			i = len(c.res.Jobs)
			c.jobs[l.Job] = i
			c.res.Jobs = append(c.res.Jobs, JobCount{Job: l.Job, Repo: l.Repo, Latest: l.At})
		}
		c.res.Jobs[i].Matches++
		if l.At.After(c.res.Jobs[i].Latest) {
			c.res.Jobs[i].Latest = l.At
		}
		if len(c.res.Lines) < c.q.Limit && c.bytes < maxResultBytes {
			c.res.Lines = append(c.res.Lines, l)
			c.bytes += len(l.Text)
		} else if c.bytes >= maxResultBytes {
			c.res.Partial = true
		}
	}
	if c.q.Scan > 0 && c.scanned >= c.q.Scan {
		c.res.Partial = true
		return false
	}
	return true
}

// SetPartial records that the store stopped early (its time bound).
func (c *Collector) SetPartial() { c.res.Partial = true }

// Result returns what was found.
func (c *Collector) Result() Result {
	r := c.res
	slices.SortStableFunc(r.Jobs, func(a, b JobCount) int { return b.Latest.Compare(a.Latest) })
	return r
}
