package app_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	nimbuslogs "github.com/nimbus-build/nimbus/internal/logs"
)

// A job that writes more than --max-log-size keeps the first lines of
// its output that fit and a notice, and still finishes on its own exit
// code: a runaway log cannot fill the database.
func TestJobLogIsBounded(t *testing.T) {
	needSandbox(t)
	const limit = 4096
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) { c.MaxLogBytes = limit })
	h.StartAgent(t, "chatty", nil)
	id := submit(t, h, "sh", "-c", `i=0; while [ $i -lt 3000 ]; do echo "line $i"; i=$((i+1)); done; exit 7`)
	j := waitJob(t, h, id, 60*time.Second, finished)
	if j.State != "failed" || j.ExitCode == nil || *j.ExitCode != 7 {
		t.Fatalf("job: state %s exit %v reason %q, want failed with exit 7", j.State, j.ExitCode, j.Reason)
	}
	var kept strings.Builder
	for i := range 3000 {
		line := fmt.Sprintf("line %d\n", i)
		if kept.Len()+len(line) > limit {
			break
		}
		kept.WriteString(line)
	}
	want := kept.String() + nimbuslogs.Notice(limit) + "\n"
	if got := logs(t, h, id); got != want {
		t.Errorf("log: %d bytes ending %q, want %d bytes ending %q", len(got), tail(got), len(want), tail(want))
	}
}

func tail(s string) string { return s[max(0, len(s)-120):] }
