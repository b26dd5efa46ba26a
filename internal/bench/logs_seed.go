package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/logs/clickhouse"
)

// seedJobs is how many jobs the seeded lines are spread over.
const seedJobs = 100

// seedLogLines stores n more lines for the search rows, straight into the
// control plane's log store in large writes (the store's own Write, the
// one ingest uses, but not through the agent API, the batcher or its
// bounds): a bulk path to reach millions of stored lines in minutes. It
// is seeding, not an ingest figure. The lines are those benchIngest
// streams (the same search patterns find the same kind of lines), spread
// over 30 minutes ending 5 minutes before now, in seedJobs jobs numbered after the
// ingest's. It returns the seconds it took.
func seedLogLines(ctx context.Context, cp *app.ControlPlane, c app.ServerConfig, owner *apiclient.Client, o LogsOptions, n int, stderr io.Writer) (time.Duration, error) {
	var store logs.Store = cp.Store.Logs()
	batch := 10_000 // lines a write: one SQLite transaction
	if c.LogStore != "" {
		ch, err := clickhouse.Open(ctx, c.LogStore, clickhouse.Options{})
		if err != nil {
			return 0, err
		}
		store, batch = ch, 200_000
	}
	type seedJob struct {
		id, org string
		index   int
		state   logs.State
	}
	jobs := make([]*seedJob, seedJobs)
	for i := range jobs {
		j, err := owner.SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"true"}, Labels: []string{"seed"}})
		if err != nil {
			return 0, err
		}
		sj, err := cp.Store.Jobs().Get(ctx, j.ID)
		if err != nil {
			return 0, err
		}
		jobs[i] = &seedJob{id: j.ID, org: sj.OrgID, index: o.Jobs + i, state: logs.State{Cursor: logs.Start}}
	}
	perJob := (n + seedJobs - 1) / seedJobs
	perWrite := max(1, batch/seedJobs) // lines of each job in a write
	start := time.Now()
	// Within the searches' last hour even if seeding takes 25 minutes.
	span := 30 * time.Minute
	first := start.Add(-35 * time.Minute)
	stored, reported := 0, 0
	for line := 0; line < perJob && stored < n; line += perWrite {
		var ws []logs.Write
		for _, j := range jobs {
			k := min(perWrite, perJob-line, n-stored)
			if k <= 0 {
				break
			}
			w := logs.Write{Org: j.org, Job: j.id, Prev: j.state.Version}
			for i := line; i < line+k; i++ {
				text := fmt.Sprintf("job %d line %d: compiling src/module_%04d/file.go (%d of %d)", j.index, i, i%9999, i, perJob)
				if i%1000 == 999 {
					text = fmt.Sprintf("job %d line %d: error: connect to 10.0.0.%d:443 timeout after 30s", j.index, i, i%250)
				}
				at := first.Add(time.Duration(float64(span) * float64(i) / float64(perJob)))
				w.Lines = append(w.Lines, logs.Line{Org: j.org, Job: j.id, N: int64(i + 1), Fence: 1, Seq: j.state.Cursor.Seq + 1,
					Stream: logs.StreamOutput, At: at, Text: text})
				j.state.Used += int64(len(text) + 1)
			}
			j.state.Version++
			j.state.Cursor = logs.Cursor{Fence: 1, Seq: j.state.Cursor.Seq + 1}
			j.state.Lines += int64(k)
			w.State = j.state
			ws = append(ws, w)
			stored += k
		}
		errs, err := store.Write(ctx, ws)
		if err != nil {
			return 0, fmt.Errorf("seed: %w", err)
		}
		for _, err := range errs {
			if err != nil {
				return 0, fmt.Errorf("seed: %w", err)
			}
		}
		if stored-reported >= 1_000_000 {
			reported = stored
			fmt.Fprintf(stderr, "bench logs: seeded %d of %d lines (%.0f/s)\n", stored, n, float64(stored)/time.Since(start).Seconds())
		}
	}
	return time.Since(start), nil
}
