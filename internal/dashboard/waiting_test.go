package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

func TestWhyWaits(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	created := now.Add(-10 * time.Minute)
	job := store.Job{State: store.JobQueued, Labels: []string{"linux", "gpu"}, CreatedAt: created, UpdatedAt: created, NotBefore: created, MaxAttempts: 3}
	agent := func(name string, labels, allowed []string, seen time.Duration, max int) store.Agent {
		return store.Agent{ID: "agt_" + name, Name: name, Labels: labels, AllowedLabels: allowed, LastSeenAt: now.Add(-seen), MaxJobs: max}
	}
	gpu := []string{"linux", "gpu"}
	disabled := agent("old", gpu, gpu, time.Second, 1)
	disabled.DisabledAt = now.Add(-time.Hour)
	for _, tc := range []struct {
		name  string
		job   func(j *store.Job)
		fleet fleetView
		kind  string
		text  string
		since time.Time
	}{
		{"rate limited", func(j *store.Job) { j.NotBefore = now.Add(time.Minute) }, fleetView{}, WaitRateLimit, "rate limit", created},
		{"retried after a failure", func(j *store.Job) {
			j.NotBefore, j.Reason, j.UpdatedAt = now.Add(time.Minute), "mint runner config: 502", now.Add(-time.Minute)
		}, fleetView{}, WaitRetry, "mint runner config: 502", now.Add(-time.Minute)},
		{"no agent", nil, fleetView{agents: []store.Agent{agent("cpu", []string{"linux"}, []string{"linux"}, 0, 4)}}, WaitNoAgent, "No agent of this org offers labels linux, gpu", created},
		{"allowed, not declared", nil, fleetView{agents: []store.Agent{agent("g1", []string{"linux"}, gpu, 0, 4)}}, WaitNotDeclared, "g1 may serve them", created},
		{"only disabled ones", nil, fleetView{agents: []store.Agent{disabled}}, WaitDisabled, "disabled (old)", created},
		{"offline", nil, fleetView{agents: []store.Agent{agent("g1", gpu, gpu, 3*time.Hour, 1)}}, WaitOffline, "No online agent offers labels linux, gpu: g1 last seen", created},
		{"offline since it went away", nil, fleetView{agents: []store.Agent{agent("g1", gpu, gpu, 2*time.Minute, 1)}}, WaitOffline, "g1", now.Add(-time.Minute)},
		{"busy", nil, fleetView{agents: []store.Agent{agent("g1", gpu, gpu, 0, 2), agent("g2", append(gpu, "x"), gpu, 0, 1)},
			busy: map[string]int{"agt_g1": 2, "agt_g2": 1}}, WaitBusy, "g1 2/2, g2 1/1", created},
		{"ready", nil, fleetView{agents: []store.Agent{agent("g1", gpu, gpu, 0, 2)}, busy: map[string]int{"agt_g1": 1}}, WaitReady, "g1 has a free slot", created},
		{"requeued", func(j *store.Job) { j.Attempt, j.UpdatedAt = 1, now.Add(-time.Minute) },
			fleetView{agents: []store.Agent{agent("g1", gpu, gpu, 0, 2)}}, WaitReady, "Attempt 2 of 3", now.Add(-time.Minute)},
	} {
		j := job
		if tc.job != nil {
			tc.job(&j)
		}
		got := whyWaits(j, tc.fleet, now)
		if got.Kind != tc.kind || !strings.Contains(got.Text, tc.text) || !got.Since.Equal(tc.since) {
			t.Errorf("%s: %+v; want %s containing %q since %v", tc.name, got, tc.kind, tc.text, tc.since)
		}
	}
	running := job
	running.State = store.JobRunning
	if r := whyWaits(running, fleetView{}, now); r.Kind != "" {
		t.Errorf("a running job waits: %+v", r)
	}
}
