package github

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"
)

// HookDelivery is one attempt GitHub made to deliver an event to the App's
// webhook (GET /app/hook/deliveries).
type HookDelivery struct {
	ID             int64     `json:"id"`
	GUID           string    `json:"guid"`
	DeliveredAt    time.Time `json:"delivered_at"`
	Redelivery     bool      `json:"redelivery"`
	Status         string    `json:"status"`
	StatusCode     int       `json:"status_code"`
	Event          string    `json:"event"`
	Action         string    `json:"action"`
	InstallationID int64     `json:"installation_id"`
	RepositoryID   int64     `json:"repository_id"`
}

// OK reports whether the attempt reached the webhook and got a 2xx.
func (d HookDelivery) OK() bool { return d.StatusCode >= 200 && d.StatusCode < 300 }

// HookDeliveries returns a page of the App's webhook deliveries, newest
// first, and the cursor of the next page ("" on the last). Authenticated
// as the App.
func (a *App) HookDeliveries(ctx context.Context, cursor string) ([]HookDelivery, string, error) {
	jwt, err := a.appJWT()
	if err != nil {
		return nil, "", err
	}
	q := url.Values{"per_page": {"100"}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var out []HookDelivery
	var hdr http.Header
	if err := a.rest.doHeader(ctx, http.MethodGet, "/app/hook/deliveries?"+q.Encode(), "Bearer "+jwt, nil, http.StatusOK, &out, &hdr); err != nil {
		return nil, "", err
	}
	return out, nextCursor(hdr.Get("Link")), nil
}

// Redeliver asks GitHub to deliver the delivery id again (same GUID and
// payload).
func (a *App) Redeliver(ctx context.Context, id int64) error {
	jwt, err := a.appJWT()
	if err != nil {
		return err
	}
	path := "/app/hook/deliveries/" + strconv.FormatInt(id, 10) + "/attempts"
	return a.rest.do(ctx, http.MethodPost, path, "Bearer "+jwt, nil, http.StatusAccepted, nil)
}

var linkNext = regexp.MustCompile(`<([^>]*)>\s*;\s*rel="next"`)

// nextCursor takes the cursor parameter of the rel="next" URL of a Link
// header.
func nextCursor(link string) string {
	m := linkNext.FindStringSubmatch(link)
	if m == nil {
		return ""
	}
	u, err := url.Parse(m[1])
	if err != nil {
		return ""
	}
	return u.Query().Get("cursor")
}

// Redeliverer finds the App's workflow_job deliveries that never reached
// Nimbus (GitHub does not retry a failed delivery: a webhook sent while
// Nimbus was down or unreachable is otherwise lost, and its job waits on
// GitHub for a runner that never comes) and asks GitHub to send them again.
type Redeliverer struct {
	App *App
	// Seen reports whether Nimbus has processed the delivery GUID (it may
	// have, even when GitHub recorded a failure, e.g. a late answer).
	Seen func(ctx context.Context, guid string) (bool, error)
	// Lookback is how far back the first round looks (default 6 h; GitHub
	// keeps deliveries for 3 days).
	Lookback time.Duration
	// MaxAttempts: a GUID GitHub tried this often is given up on (default
	// 3), so a delivery Nimbus refuses (a wrong secret) is not sent forever.
	MaxAttempts int
	// MaxPerRound bounds the redeliveries one round asks for (default 100).
	MaxPerRound int
	Now         func() time.Time

	since time.Time
	// pending are the GUIDs asked for and not yet seen attempted again:
	// how many attempts GitHub had recorded when asked, and when. GitHub
	// redelivers asynchronously, so the next round may come before the
	// attempt lands; it must not ask twice.
	pending map[string]pendingAsk
}

// pendingAsk is a redelivery asked for and not yet recorded by GitHub.
type pendingAsk struct {
	attempts int
	at       time.Time
}

// pendingTTL is how long a redelivery that GitHub never recorded blocks
// asking again.
const pendingTTL = 10 * time.Minute

// Round looks at the deliveries since the last round (with some overlap:
// GitHub records attempts late) and asks for each failed workflow_job
// delivery Nimbus has not seen to be sent again. It returns how many it
// asked for.
func (r *Redeliverer) Round(ctx context.Context) (int, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	start := now()
	since := r.since
	if since.IsZero() {
		since = start.Add(-cmp.Or(r.Lookback, 6*time.Hour))
	}
	type guidState struct {
		ok       bool
		attempts int
		latest   HookDelivery
	}
	guids := map[string]*guidState{}
	var order []string
	for cursor, pages := "", 0; pages < 100; pages++ {
		page, next, err := r.App.HookDeliveries(ctx, cursor)
		if err != nil {
			return 0, fmt.Errorf("list webhook deliveries: %w", err)
		}
		older := false
		for _, d := range page {
			if d.DeliveredAt.Before(since) {
				older = true
				continue
			}
			if d.Event != "workflow_job" || d.GUID == "" {
				continue
			}
			g := guids[d.GUID]
			if g == nil {
				g = &guidState{latest: d}
				guids[d.GUID] = g
				order = append(order, d.GUID)
			}
			g.attempts++
			g.ok = g.ok || d.OK()
			if d.DeliveredAt.After(g.latest.DeliveredAt) {
				g.latest = d
			}
		}
		if older || next == "" {
			break
		}
		cursor = next
	}
	asked := 0
	for _, guid := range order {
		g := guids[guid]
		if g.ok || g.attempts >= cmp.Or(r.MaxAttempts, 3) {
			delete(r.pending, guid)
			continue
		}
		if p, ok := r.pending[guid]; ok && g.attempts <= p.attempts && start.Sub(p.at) < pendingTTL {
			continue // asked already; its attempt has not landed yet
		}
		if asked >= cmp.Or(r.MaxPerRound, 100) {
			break
		}
		seen, err := r.Seen(ctx, guid)
		if err != nil {
			return asked, err
		}
		if seen {
			continue
		}
		if err := r.App.Redeliver(ctx, g.latest.ID); err != nil {
			return asked, fmt.Errorf("redeliver %s: %w", guid, err)
		}
		if r.pending == nil {
			r.pending = map[string]pendingAsk{}
		}
		r.pending[guid] = pendingAsk{attempts: g.attempts, at: start}
		r.App.log.InfoContext(ctx, "asked GitHub to redeliver a failed webhook", "guid", guid, "delivery_id", g.latest.ID,
			"action", g.latest.Action, "status", g.latest.Status)
		asked++
	}
	for guid, p := range r.pending {
		if start.Sub(p.at) >= pendingTTL {
			delete(r.pending, guid)
		}
	}
	// Next round: from a little before this one started.
	r.since = start.Add(-5 * time.Minute)
	return asked, nil
}

// Run does a round every interval until ctx ends; failures are logged.
func (r *Redeliverer) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.Round(ctx); err != nil && ctx.Err() == nil {
			r.App.log.WarnContext(ctx, "webhook redelivery round", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
