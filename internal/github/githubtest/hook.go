package githubtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// HookDelivery is an attempt the emulator made to deliver an event to the
// App's webhook, as GET /app/hook/deliveries lists it.
type HookDelivery struct {
	ID             int64
	GUID           string
	DeliveredAt    time.Time
	Redelivery     bool
	StatusCode     int // 0: no HTTP answer
	Event, Action  string
	InstallationID int64
	RepositoryID   int64
	body           []byte
}

func (d HookDelivery) status() string {
	switch {
	case d.StatusCode >= 200 && d.StatusCode < 300:
		return "OK"
	case d.StatusCode == 0:
		return "failed to connect to host"
	}
	return fmt.Sprintf("Invalid HTTP Response: %d", d.StatusCode)
}

// SetHook points the App's webhook at url, signed with secret.
func (s *Server) SetHook(url string, secret []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hookURL, s.hookSecret = url, secret
}

// SendHook delivers an event to the webhook the way GitHub does (one
// attempt, 10 s timeout) and records the attempt, failed or not. The GUID
// is new; the result is the recorded attempt.
func (s *Server) SendHook(ctx context.Context, event string, body []byte) HookDelivery {
	return s.sendHook(ctx, "", event, body, false)
}

func (s *Server) sendHook(ctx context.Context, guid, event string, body []byte, redelivery bool) HookDelivery {
	s.mu.Lock()
	hookURL, secret := s.hookURL, s.hookSecret
	if guid == "" {
		guid = newGUID()
	}
	s.mu.Unlock()
	var meta struct {
		Action       string `json:"action"`
		Installation struct {
			ID int64 `json:"id"`
		} `json:"installation"`
		Repository struct {
			ID int64 `json:"id"`
		} `json:"repository"`
	}
	json.Unmarshal(body, &meta)
	d := HookDelivery{GUID: guid, DeliveredAt: s.cfg.Now().UTC().Truncate(time.Second), Redelivery: redelivery, Event: event,
		Action: meta.Action, InstallationID: meta.Installation.ID, RepositoryID: meta.Repository.ID, body: bytes.Clone(body)}
	if hookURL != "" {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := Deliver(cctx, nil, hookURL, secret, event, guid, body)
		cancel()
		if err == nil {
			d.StatusCode = resp.StatusCode
			resp.Body.Close()
		}
	}
	s.mu.Lock()
	s.nextDeliveryID++
	d.ID = s.nextDeliveryID
	s.hookDeliveries = append(s.hookDeliveries, d)
	s.mu.Unlock()
	return d
}

// HookDeliveries returns every attempt recorded, oldest first.
func (s *Server) HookDeliveries() []HookDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]HookDelivery(nil), s.hookDeliveries...)
}

func newGUID() string {
	b := []byte(randomString(32))
	return fmt.Sprintf("%s-%s-%s-%s-%s", b[0:8], b[8:12], b[12:16], b[16:20], b[20:32])
}

// authApp checks the App JWT of r, writing the error when it fails.
func (s *Server) authApp(w http.ResponseWriter, r *http.Request) bool {
	jwt, ok := bearer(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return false
	}
	if _, err := s.verifyAppJWT(jwt, s.cfg.Now()); err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return false
	}
	return true
}

// listHookDeliveries is GET /app/hook/deliveries: newest first, per_page
// (default 30, at most 100) and an opaque cursor in the Link header.
func (s *Server) listHookDeliveries(w http.ResponseWriter, r *http.Request) {
	if !s.authApp(w, r) {
		return
	}
	perPage := 30
	if v := r.URL.Query().Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusUnprocessableEntity, "per_page must be a positive number")
			return
		}
		perPage = min(n, 100)
	}
	// The cursor is the id below which the page starts.
	before := int64(1 << 62)
	if c := r.URL.Query().Get("cursor"); c != "" {
		n, err := strconv.ParseInt(c, 10, 64)
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, "invalid cursor")
			return
		}
		before = n
	}
	s.mu.Lock()
	var page []map[string]any
	var last int64
	more := false
	for i := len(s.hookDeliveries) - 1; i >= 0; i-- {
		d := s.hookDeliveries[i]
		if d.ID >= before {
			continue
		}
		if len(page) == perPage {
			more = true
			break
		}
		page = append(page, map[string]any{
			"id": d.ID, "guid": d.GUID, "delivered_at": d.DeliveredAt.Format(time.RFC3339), "redelivery": d.Redelivery,
			"duration": 0.05, "status": d.status(), "status_code": d.StatusCode, "event": d.Event, "action": d.Action,
			"installation_id": d.InstallationID, "repository_id": d.RepositoryID,
		})
		last = d.ID
	}
	s.mu.Unlock()
	if more {
		q := url.Values{"per_page": {strconv.Itoa(perPage)}, "cursor": {strconv.FormatInt(last, 10)}}
		w.Header().Set("Link", fmt.Sprintf(`<%s/app/hook/deliveries?%s>; rel="next"`, s.URL, q.Encode()))
	}
	if page == nil {
		page = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, page)
}

// redeliverHook is POST /app/hook/deliveries/{delivery_id}/attempts: 202,
// then a new attempt with the same GUID and payload.
func (s *Server) redeliverHook(w http.ResponseWriter, r *http.Request) {
	if !s.authApp(w, r) {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("delivery_id"), 10, 64)
	var d HookDelivery
	found := false
	s.mu.Lock()
	for _, x := range s.hookDeliveries {
		if x.ID == id && err == nil {
			d, found = x, true
		}
	}
	s.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{})
	go s.sendHook(context.Background(), d.GUID, d.Event, d.body, true)
}
