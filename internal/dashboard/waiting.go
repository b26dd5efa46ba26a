package dashboard

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

// onlineWithin: an agent seen this recently is online (it polls for work
// and renews its leases every few seconds).
const onlineWithin = time.Minute

// Why a queued job waits.
const (
	WaitRateLimit   = "rate_limit"   // the org's job rate deferred it
	WaitRetry       = "retry"        // given back after a failure, retried later
	WaitNoAgent     = "no_agent"     // no agent of the org may serve its labels
	WaitNotDeclared = "not_declared" // an agent may serve them but does not declare them
	WaitDisabled    = "disabled"     // only disabled agents offer them
	WaitOffline     = "offline"      // agents offer them, none is online
	WaitBusy        = "busy"         // every matching slot is busy
	WaitReady       = "ready"        // a matching agent has a free slot: it takes it at its next poll
)

// WaitReason says why a queued job has not started, and since when.
type WaitReason struct {
	Kind  string
	Text  string
	Since time.Time
}

// fleetView is what the reasons are computed from: the org's agents and
// how many live jobs each holds.
type fleetView struct {
	agents []store.Agent
	busy   map[string]int
}

// whyWaits explains a queued job from the agents' labels, enrollments
// and slots, the org's rate limit and the retry backoff; for any other
// state it returns the zero reason.
func whyWaits(j store.Job, fv fleetView, now time.Time) WaitReason {
	if j.State != store.JobQueued {
		return WaitReason{}
	}
	ready := j.CreatedAt
	if j.Attempt > 0 || j.Reason != "" {
		ready = j.UpdatedAt // back in the queue since then
	}
	prefix := ""
	if j.Attempt > 0 {
		prefix = fmt.Sprintf("Attempt %d of %d (an earlier lease expired). ", j.Attempt+1, j.MaxAttempts)
	}
	if j.CancelRequested {
		return WaitReason{Kind: WaitReady, Text: "A cancel was asked for.", Since: j.UpdatedAt}
	}
	if j.NotBefore.After(now) {
		if j.Reason != "" {
			return WaitReason{Kind: WaitRetry, Since: ready,
				Text: prefix + fmt.Sprintf("Retried at %s after: %s", j.NotBefore.UTC().Format("15:04:05 UTC"), j.Reason)}
		}
		return WaitReason{Kind: WaitRateLimit, Since: j.CreatedAt,
			Text: prefix + fmt.Sprintf("The org's job rate limit deferred it: it may start at %s.", j.NotBefore.UTC().Format("15:04:05 UTC"))}
	}
	if j.NotBefore.After(ready) {
		ready = j.NotBefore
	}
	labels := "no labels"
	if len(j.Labels) > 0 {
		labels = "labels " + strings.Join(j.Labels, ", ")
	}
	var declared, allowed, disabled, online []store.Agent
	for _, a := range fv.agents {
		switch {
		case !subset(j.Labels, a.Labels):
			if a.DisabledAt.IsZero() && subset(j.Labels, a.AllowedLabels) {
				allowed = append(allowed, a)
			}
		case !a.DisabledAt.IsZero():
			disabled = append(disabled, a)
		default:
			declared = append(declared, a)
			if now.Sub(a.LastSeenAt) < onlineWithin {
				online = append(online, a)
			}
		}
	}
	switch {
	case len(declared) == 0 && len(allowed) > 0:
		return WaitReason{Kind: WaitNotDeclared, Since: ready, Text: prefix + fmt.Sprintf(
			"No agent declares %s; %s may serve them (its join token allows them) but does not offer them now: restart it with those labels.",
			labels, names(allowed, 3))}
	case len(declared) == 0 && len(disabled) > 0:
		return WaitReason{Kind: WaitDisabled, Since: ready, Text: prefix + fmt.Sprintf(
			"The only agents offering %s are disabled (%s).", labels, names(disabled, 3))}
	case len(declared) == 0:
		return WaitReason{Kind: WaitNoAgent, Since: ready, Text: prefix + fmt.Sprintf(
			"No agent of this org offers %s. An agent serves only the labels its join token allows: create one with them (nimbus ctl agents join-token --labels …).", labels)}
	case len(online) == 0:
		since := ready
		for _, a := range declared {
			if t := a.LastSeenAt.Add(onlineWithin); t.After(since) {
				since = t
			}
		}
		return WaitReason{Kind: WaitOffline, Since: since, Text: prefix + fmt.Sprintf(
			"No online agent offers %s: %s last seen %s.", labels, names(declared, 3), ago(latestSeen(declared)))}
	}
	var free []store.Agent
	var slots []string
	for _, a := range online {
		if a.MaxJobs <= 0 || fv.busy[a.ID] < a.MaxJobs {
			free = append(free, a)
		}
		slots = append(slots, fmt.Sprintf("%s %d/%d", a.Name, fv.busy[a.ID], a.MaxJobs))
	}
	if len(free) == 0 {
		sort.Strings(slots)
		if len(slots) > 4 {
			slots = append(slots[:4], "…")
		}
		return WaitReason{Kind: WaitBusy, Since: ready, Text: prefix + fmt.Sprintf(
			"Every slot of the agents offering %s is busy (%s).", labels, strings.Join(slots, ", "))}
	}
	return WaitReason{Kind: WaitReady, Since: ready, Text: prefix + fmt.Sprintf(
		"%s has a free slot and takes it at its next poll (or jobs queued before it go first).", names(free, 1))}
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func names(list []store.Agent, n int) string {
	var out []string
	for i, a := range list {
		if i == n {
			out = append(out, fmt.Sprintf("and %d more", len(list)-n))
			break
		}
		out = append(out, a.Name)
	}
	return strings.Join(out, ", ")
}

func latestSeen(list []store.Agent) time.Time {
	var t time.Time
	for _, a := range list {
		if a.LastSeenAt.After(t) {
			t = a.LastSeenAt
		}
	}
	return t
}
