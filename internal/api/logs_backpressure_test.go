package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/logs"
)

// With the ingest queue full, uploads are refused at once with 429, a
// JSON error and Retry-After, not queued without bound; an agent that
// sends again gets every chunk stored once, in order: nothing lost,
// nothing doubled (the threat model's "backpressure + batching
// thresholds untested").
func TestLogIngestBackpressure(t *testing.T) {
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) {
		c.LogBatch = logs.BatchConfig{Lines: 1000, Bytes: 1 << 20, Delay: 20 * time.Millisecond, QueueBytes: 1500}
	})
	ctx := context.Background()
	jt, err := h.Owner().CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: []string{"linux"}})
	if err != nil {
		t.Fatal(err)
	}
	var en apiv1.Enrolled
	must(t, h.Client(jt.Token), "POST", apiv1.PathAgentEnroll, apiv1.Enroll{Name: "a", MaxJobs: 16, Labels: []string{"linux"}}, &en)
	agent := h.Client(en.Credential)
	const jobs, uploads = 16, 5
	var leases []apiv1.Lease
	for range jobs {
		if _, err := h.Owner().SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"true"}, Labels: []string{"linux"}}); err != nil {
			t.Fatal(err)
		}
		var l apiv1.Lease
		if code, err := agent.Do(ctx, "POST", apiv1.PathAgentLease, apiv1.LeaseRequest{}, &l); err != nil || code != http.StatusOK {
			t.Fatalf("lease: %d %v", code, err)
		}
		leases = append(leases, l)
	}
	var refused, accepted atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, l := range leases {
		wg.Go(func() {
			<-start
			for seq := range uploads {
				body := apiv1.Logs{Fence: l.Fence, Chunks: []apiv1.LogChunk{{Seq: int64(seq), Data: []byte(fmt.Sprintf("%s line %d\n", l.Job.ID, seq))}}}
				for {
					var ack apiv1.LogsAck
					_, err := agent.Do(ctx, "POST", apiv1.PathAgentJob(l.Job.ID, "logs"), body, &ack)
					var e *apiclient.Error
					if asAPIError(err, &e) && e.Status == http.StatusTooManyRequests {
						if e.Code != apiv1.CodeTooMany || e.RetryAfter <= 0 {
							t.Errorf("429 without its code or Retry-After: %+v", e)
						}
						refused.Add(1)
						time.Sleep(5 * time.Millisecond) // the agent's backoff, shortened
						continue
					}
					if err != nil || ack.Seq != int64(seq) {
						t.Errorf("upload %d of %s: %+v, %v", seq, l.Job.ID, ack, err)
						return
					}
					accepted.Add(1)
					break
				}
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("%d uploads accepted, %d refused with 429 and sent again", accepted.Load(), refused.Load())
	if refused.Load() == 0 {
		t.Errorf("no upload was refused with the queue bound at 1500 bytes")
	}
	for _, l := range leases {
		var got []string
		err := h.Owner().FollowJobLines(ctx, l.Job.ID, apiclient.LineQuery{}, false, func(ln apiv1.LogLine) error {
			got = append(got, fmt.Sprintf("%d:%s", ln.Line, ln.Text))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for i := range uploads {
			want = append(want, fmt.Sprintf("%d:%s line %d", i+1, l.Job.ID, i))
		}
		if b1, b2 := mustJSON(got), mustJSON(want); b1 != b2 {
			t.Errorf("job %s lines %s, want %s", l.Job.ID, b1, b2)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
