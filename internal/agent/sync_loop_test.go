package agent

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// blockUntilStopped is a workload that writes a line and runs until it is
// stopped.
func blockUntilStopped(ctx context.Context, spec executor.Spec) int {
	_, _ = spec.Output.Write([]byte("running\n"))
	<-ctx.Done()
	return -1
}

// syncTestAgent starts an agent of f in a synctest bubble, without a
// network, running jobs with workload.
func syncTestAgent(t *testing.T, f *fakeControlPlane, workload funcExecutor) (*runningAgent, *recordingExecutor) {
	t.Helper()
	rec := record(workload)
	cfg, _ := testConfig(t, "http://nimbus.test", f, rec)
	cfg.HTTPClient = &http.Client{Transport: handlerTransport{f}}
	return startAgent(t, cfg), rec
}

func TestLeaseExpiresWhenServerUnreachable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 30 * time.Second
		f := newFakeControlPlane(ttl)
		id := f.enqueue(fakeJobSpec{argv: []string{"work"}})
		ra, rec := syncTestAgent(t, f, blockUntilStopped)
		synctest.Wait()
		if v := f.view(id); v.State != "running" {
			t.Fatalf("job %s, want running", v.State)
		}
		// Leases are renewed while the server answers.
		time.Sleep(5 * ttl)
		synctest.Wait()
		if res := rec.results(id); len(res) != 0 {
			t.Fatalf("workload stopped while the server renewed its lease: %+v", res)
		}

		down := time.Now()
		f.setDown(true)
		time.Sleep(ttl)
		synctest.Wait()
		res := rec.results(id)
		if len(res) != 1 || !errors.Is(res[0].Cause, ErrLeaseLost) {
			t.Fatalf("executor results %+v a ttl after the server went away; want the workload killed with ErrLeaseLost", res)
		}
		// The last renewal was sent at most a heartbeat's wait (ttl/3)
		// before the server went away: the workload was killed a ttl
		// after it, not before.
		if killed := res[0].Finished.Sub(down); killed <= ttl-ttl/3-minSyncInterval || killed > ttl {
			t.Errorf("workload killed %v after the server went away; want within (%v, %v]", killed, ttl-ttl/3-minSyncInterval, ttl)
		}

		f.setDown(false)
		time.Sleep(time.Minute)
		synctest.Wait()
		if v := f.view(id); len(v.Completes) != 0 || f.callCount("complete") != 0 {
			t.Errorf("job %+v: the agent reported a job whose lease it lost", v)
		}
		if ra.returned() {
			t.Errorf("Run returned: %v", ra.err)
		}
		f.checkNoViolations(t)
	})
}

func TestHeartbeatWithoutJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeControlPlane(30 * time.Second)
		syncTestAgent(t, f, blockUntilStopped)
		time.Sleep(time.Hour)
		synctest.Wait()
		// Every 15s ±10%.
		if n := f.callCount("sync"); n < 218 || n > 268 {
			t.Errorf("%d heartbeats in an hour without jobs; want about 240", n)
		}
	})
}

func TestDisabledAgentStopsAndKillsItsWorkloads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeControlPlane(30 * time.Second)
		id := f.enqueue(fakeJobSpec{argv: []string{"work"}})
		ra, rec := syncTestAgent(t, f, blockUntilStopped)
		synctest.Wait()
		f.disable("agent-1")
		time.Sleep(time.Minute)
		synctest.Wait()
		if !ra.returned() || !errors.Is(ra.err, ErrUnauthenticated) {
			t.Fatalf("Run returned %v, %v; want ErrUnauthenticated", ra.returned(), ra.err)
		}
		if res := rec.results(id); len(res) != 1 || !errors.Is(res[0].Cause, ErrUnauthenticated) {
			t.Errorf("executor results %+v; want the workload killed", res)
		}
		if n := f.callCount("complete"); n != 0 {
			t.Errorf("%d complete calls from a disabled agent", n)
		}
	})
}

func TestCancelReachesAJobLeasedDuringAHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeControlPlane(60 * time.Second)
		_, rec := syncTestAgent(t, f, blockUntilStopped)
		// The agent is idle: its heartbeat is not waiting for anything.
		// A job leased now must be watched for cancellation at once, not
		// after the next heartbeat.
		time.Sleep(3 * time.Second)
		id := f.enqueue(fakeJobSpec{argv: []string{"work"}})
		synctest.Wait()
		f.cancel(id)
		start := time.Now()
		synctest.Wait()
		v := f.view(id)
		if len(v.Completes) != 1 || v.State != "cancelled" {
			t.Fatalf("job %+v; want it cancelled at once", v)
		}
		res := rec.results(id)
		if len(res) != 1 || res[0].Finished.Sub(start) > minSyncInterval {
			t.Errorf("executor results %+v; want the workload stopped within %v of the cancel", res, minSyncInterval)
		}
	})
}
