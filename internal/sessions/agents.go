package sessions

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/store"
)

// DefaultAgentCertTTL bounds an agent's tunnel certificate unless
// Options.AgentCertTTL says otherwise; agents register again (and get a
// new one) when two thirds of it have passed.
const DefaultAgentCertTTL = 7 * 24 * time.Hour

// RegisterAgent records an agent's remote Bazel offer and signs its tunnel
// certificate for the agent's own identity.
func (b *Broker) RegisterAgent(ctx context.Context, a store.Agent, offer store.AgentRBS, csr *x509.CertificateRequest) (certPEM []byte, id pki.Identity, err error) {
	if _, _, err := net.SplitHostPort(offer.Address); err != nil || offer.Address == "" {
		return nil, id, fmt.Errorf("%w: address %q: want host:port", ErrInvalid, offer.Address)
	}
	if len(offer.InstallMD5s) == 0 || len(offer.InstallMD5s) > 16 {
		return nil, id, fmt.Errorf("%w: install_md5s: 1-16 Bazel releases", ErrInvalid)
	}
	for _, m := range offer.InstallMD5s {
		if len(m) != 32 || !hexOnly(m) {
			return nil, id, fmt.Errorf("%w: install_md5 %q: 32 hex digits", ErrInvalid, m)
		}
	}
	if offer.MaxSessions < 1 || offer.MaxSessions > 1024 {
		return nil, id, fmt.Errorf("%w: max_sessions: 1-1024", ErrInvalid)
	}
	id = pki.AgentIdentity(a.OrgID, a.ID)
	certPEM, err = b.o.CA.SignCSR(csr, id, pki.IssueOptions{TTL: b.o.AgentCertTTL})
	if err != nil {
		return nil, id, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	err = b.rec.Do(ctx, func(tx *audit.Tx) error {
		tx.Audit(store.AuditEntry{OrgID: a.OrgID, Actor: "agent:" + a.ID, Action: "agent.rbs_registered", Target: a.ID,
			Detail: map[string]string{"address": offer.Address, "install_md5s": strings.Join(offer.InstallMD5s, ",")}})
		return tx.Agents().SetRBS(ctx, a.ID, &offer)
	})
	if err != nil {
		return nil, id, err
	}
	return certPEM, id, nil
}

func hexOnly(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Orders tells an agent which sessions to start and stop, given what it
// runs. When there is nothing to do it waits up to wait for a change; when
// the context ends first it returns its error (notify.LongPoll).
func (b *Broker) Orders(ctx context.Context, a store.Agent, running []apiv1.SessionStatus, wait time.Duration) (apiv1.SessionOrders, error) {
	if err := b.o.Store.Agents().Touch(ctx, a.ID, b.o.Now()); err != nil {
		return apiv1.SessionOrders{}, err
	}
	var orders apiv1.SessionOrders
	err := b.notify.LongPoll(ctx, agentTopic(a.ID), wait, b.o.PollInterval, func() (bool, error) {
		var err error
		orders, err = b.orders(ctx, a, running)
		return len(orders.Start)+len(orders.Stop) > 0, err
	})
	if err != nil {
		return apiv1.SessionOrders{}, err
	}
	return orders, nil
}

func (b *Broker) orders(ctx context.Context, a store.Agent, running []apiv1.SessionStatus) (apiv1.SessionOrders, error) {
	out := apiv1.SessionOrders{Start: []apiv1.SessionOrder{}, Stop: []string{}}
	list, err := b.o.Store.Sessions().List(ctx, store.SessionFilter{AgentID: a.ID, LiveOnly: true, Limit: 1000})
	if err != nil {
		return out, err
	}
	runs := map[string]bool{}
	for _, r := range running {
		if r.State == "starting" || r.State == "ready" {
			runs[r.ID] = true
		}
	}
	live := map[string]bool{}
	for _, s := range list {
		live[s.ID] = true
		switch {
		case s.State == store.SessionStopping:
			if runs[s.ID] {
				out.Stop = append(out.Stop, s.ID)
			} else if _, err := b.o.Store.Sessions().Transition(ctx, s.ID, []store.SessionState{store.SessionStopping},
				store.SessionStopped, "", "", b.o.Now()); err == nil {
				b.notify.Notify(sessionTopic(s.ID))
			}
		case s.State == store.SessionPending && !runs[s.ID]:
			o, err := order(s)
			if err != nil {
				b.fail(ctx, s, err.Error())
				continue
			}
			out.Start = append(out.Start, o)
		}
	}
	// Whatever the agent runs that is not a live session here (stopped by
	// the reaper, another replica, an admin) is stopped.
	for id := range runs {
		if !live[id] {
			out.Stop = append(out.Stop, id)
		}
	}
	return out, nil
}

func order(s store.Session) (apiv1.SessionOrder, error) {
	var req rbs.ServerRequest
	if err := json.Unmarshal([]byte(s.Request), &req); err != nil {
		return apiv1.SessionOrder{}, fmt.Errorf("session request: %w", err)
	}
	return apiv1.SessionOrder{
		ID: s.ID, User: pki.UserIdentity(s.OrgID, s.User).String(), RepoHash: s.RepoHash, InstallMD5: s.InstallMD5,
		Workspace: req.Workspace, OutputBase: req.OutputBase, OutputUserRoot: req.OutputUserRoot, StartupOptions: req.StartupOptions,
	}, nil
}

func (b *Broker) fail(ctx context.Context, s store.Session, reason string) {
	if _, err := b.o.Store.Sessions().Transition(ctx, s.ID, []store.SessionState{store.SessionPending, store.SessionReady, store.SessionStopping},
		store.SessionFailed, "", reason, b.o.Now()); err == nil {
		b.notify.Notify(sessionTopic(s.ID))
	}
}

// Report records what an agent says of one of its sessions.
func (b *Broker) Report(ctx context.Context, a store.Agent, id string, r apiv1.SessionReport) (store.Session, error) {
	s, err := b.o.Store.Sessions().Get(ctx, id)
	if err != nil || s.AgentID != a.ID {
		return store.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	now := b.o.Now()
	var out store.Session
	switch r.State {
	case "ready":
		if _, _, err := net.SplitHostPort(r.Address); err != nil {
			return s, fmt.Errorf("%w: address %q: want host:port", ErrInvalid, r.Address)
		}
		out, err = b.o.Store.Sessions().Transition(ctx, id, []store.SessionState{store.SessionPending}, store.SessionReady, r.Address, "", now)
	case "failed":
		out, err = b.o.Store.Sessions().Transition(ctx, id, []store.SessionState{store.SessionPending, store.SessionReady, store.SessionStopping},
			store.SessionFailed, "", trim(r.Reason), now)
	case "stopped":
		out, err = b.o.Store.Sessions().Transition(ctx, id, []store.SessionState{store.SessionPending, store.SessionReady, store.SessionStopping},
			store.SessionStopped, "", trim(r.Reason), now)
	default:
		return s, fmt.Errorf("%w: state %q: ready, failed or stopped", ErrInvalid, r.State)
	}
	if errors.Is(err, store.ErrNotFound) {
		// Already over (or never pending): an old report, harmless.
		return b.o.Store.Sessions().Get(ctx, id)
	}
	if err != nil {
		return out, err
	}
	b.notify.Notify(sessionTopic(id))
	if r.State != "ready" {
		b.audit(ctx, agentPrincipal(a), "session.ended", out)
	}
	return out, nil
}

func trim(s string) string {
	if len(s) > 2000 {
		return s[:2000]
	}
	return s
}
