package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
)

// A token revoked in the middle of a load on the build cache: requests
// that start more than a second after the revocation answered get
// nothing (the cache keeps what a token stands for in memory, for under a
// second).
func TestRevokedTokenMidLoad(t *testing.T) {
	ctx := context.Background()
	h := apptest.Start(t, "sqlite")
	var ci apiv1.Token
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/tokens", apiv1.CreateToken{Name: "ci", Role: "ci"}, &ci); err != nil {
		t.Fatal(err)
	}
	blob := []byte("a blob read under load")
	sum := sha256.Sum256(blob)
	url := h.URL + "/cache/cas/" + hex.EncodeToString(sum[:])
	do := func(method string, body []byte) int {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+ci.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := do("PUT", blob); got != http.StatusOK {
		t.Fatalf("PUT: %d", got)
	}
	type answer struct {
		start time.Time
		code  int
	}
	var (
		mu       sync.Mutex
		answers  []answer
		revoked  time.Time
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		refusals = make(chan struct{}, 1)
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				code := do("GET", nil)
				mu.Lock()
				answers = append(answers, answer{start, code})
				mu.Unlock()
				if code == http.StatusUnauthorized {
					select {
					case refusals <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	// Let the load run, revoke, and keep it running until well past the
	// bound.
	waitFor(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(answers) > 100 })
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/tokens/"+ci.ID+"/revoke", nil, nil); err != nil {
		t.Fatal(err)
	}
	revoked = time.Now()
	select {
	case <-refusals:
	case <-time.After(10 * time.Second):
		t.Error("the revoked token is still accepted after 10 s")
	}
	waitFor(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return answers[len(answers)-1].start.After(revoked.Add(1500 * time.Millisecond))
	})
	close(stop)
	wg.Wait()
	var before, within, after, refusedAfter int
	for _, a := range answers {
		switch {
		case a.start.Before(revoked):
			before++
		case a.start.Before(revoked.Add(time.Second)):
			if a.code == http.StatusOK {
				within++
			}
		default:
			if a.code == http.StatusOK {
				after++
			} else if a.code == http.StatusUnauthorized {
				refusedAfter++
			}
		}
	}
	t.Logf("%d requests before the revocation; %d served within its second; %d served after it, %d refused", before, within, after, refusedAfter)
	if after != 0 {
		t.Errorf("%d requests started more than a second after the revocation were served", after)
	}
	if refusedAfter == 0 {
		t.Error("no request after the bound was refused: the load stopped too early")
	}
}
