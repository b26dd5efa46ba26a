package jobs

import (
	"slices"
	"strings"
	"sync"
)

// Bounds of the label-set label of the job histograms.
const (
	// maxLabelSets is how many distinct label sets a process reports;
	// later ones are reported as "other".
	maxLabelSets = 50
	// maxLabelSetLen is the longest label set reported as it is.
	maxLabelSetLen = 200
)

// labelValues turns a job's labels into a metric label value with
// bounded cardinality: a job's labels come from whoever writes its
// workflow (runs-on), so a metric labelled by them as they are could grow
// without end. The first max distinct sets keep their name; later ones,
// and overlong ones, are "other".
type labelValues struct {
	max int
	mu  sync.Mutex
	set map[string]bool
}

func newLabelValues(max int) *labelValues {
	return &labelValues{max: max, set: map[string]bool{}}
}

// of returns the value for labels: sorted and joined with commas, "none"
// for none, or "other".
func (l *labelValues) of(labels []string) string {
	if len(labels) == 0 {
		return "none"
	}
	s := slices.Clone(labels)
	slices.Sort(s)
	v := strings.Join(slices.Compact(s), ",")
	if len(v) > maxLabelSetLen || v == "other" || v == "none" {
		return "other"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set[v] {
		return v
	}
	if len(l.set) >= l.max {
		return "other"
	}
	l.set[v] = true
	return v
}
