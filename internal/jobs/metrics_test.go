package jobs_test

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
)

// The job histograms on a real control plane's /metrics: jobs submitted
// through the API, leased, started and finished by an agent through the
// agent API; each lease is a queue observation and each finish a run
// observation, under the job's sorted label set (never its id or repo).
func TestJobHistogramsOnMetrics(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			h := apptest.Start(t, engine)
			ctx := context.Background()
			owner := h.Owner()
			jt, err := owner.CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: []string{"linux", "x64", "gpu"}})
			if err != nil {
				t.Fatal(err)
			}
			en, err := h.Client(jt.Token).Enroll(ctx, apiv1.Enroll{Name: "metrics-agent", MaxJobs: 4})
			if err != nil {
				t.Fatal(err)
			}
			agent := h.Client(en.Credential)
			if _, err := agent.Register(ctx, apiv1.Register{Labels: []string{"linux", "x64", "gpu"}, MaxJobs: 4}); err != nil {
				t.Fatal(err)
			}
			ends := map[string]string{} // job id → state it ends in
			for _, tc := range []struct {
				labels []string
				end    string
			}{
				{[]string{"x64", "linux"}, "succeeded"},
				{[]string{"linux", "x64"}, "failed"},
				{[]string{"gpu"}, "succeeded"},
			} {
				j, err := owner.SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"true"}, Labels: tc.labels})
				if err != nil {
					t.Fatal(err)
				}
				ends[j.ID] = tc.end
			}
			for range ends {
				l, err := agent.Lease(ctx, 5)
				if err != nil || l == nil {
					t.Fatalf("lease: %v %v", l, err)
				}
				if _, err := agent.StartJob(ctx, l.Job.ID, l.Fence); err != nil {
					t.Fatal(err)
				}
				if _, err := agent.CompleteJob(ctx, l.Job.ID, apiv1.Complete{Fence: l.Fence, State: ends[l.Job.ID]}); err != nil {
					t.Fatal(err)
				}
			}
			m := scrape(t, h)
			for series, want := range map[string]float64{
				`nimbus_job_queue_seconds_count{labels="linux,x64"}`:                 2,
				`nimbus_job_queue_seconds_count{labels="gpu"}`:                       1,
				`nimbus_job_run_seconds_count{labels="linux,x64",state="succeeded"}`: 1,
				`nimbus_job_run_seconds_count{labels="linux,x64",state="failed"}`:    1,
				`nimbus_job_run_seconds_count{labels="gpu",state="succeeded"}`:       1,
			} {
				if got, ok := m[series]; !ok || got != want {
					t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
				}
			}
			for series := range m {
				for id := range ends {
					if strings.Contains(series, id) {
						t.Errorf("a job id in a series: %s", series)
					}
				}
			}
		})
	}
}

// scrape reads the control plane's /metrics into series → value.
func scrape(t *testing.T, h *apptest.Harness) map[string]float64 {
	t.Helper()
	resp, err := h.Client("").Raw(context.Background(), "GET", "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}
