package sessions

import (
	"context"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/store"
)

func agentPrincipal(a store.Agent) auth.Principal {
	return auth.Principal{Kind: auth.KindAgent, Org: a.OrgID, ID: a.ID, Name: a.Name}
}

// Run reaps sessions until ctx ends: idle ones are stopped; those of
// agents that went away are ended.
func (b *Broker) Run(ctx context.Context) error {
	t := time.NewTicker(max(b.o.PollInterval*10, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := b.Reap(ctx); err != nil {
			b.log.Warn("reap sessions", "err", err)
		}
	}
}

// Reap stops the sessions idle past the TTL and ends those whose agent has
// not been seen for a while (it cannot report them any more).
func (b *Broker) Reap(ctx context.Context) error {
	now := b.o.Now()
	idle, err := b.o.Store.Sessions().Idle(ctx, now.Add(-b.o.IdleTTL))
	if err != nil {
		return err
	}
	for _, s := range idle {
		if _, err := b.stop(ctx, s, "idle for "+b.o.IdleTTL.String()); err != nil {
			b.log.Warn("stop idle session", "session_id", s.ID, "err", err)
			continue
		}
		b.audit(ctx, auth.Principal{}, "session.reaped", s)
	}
	live, err := b.o.Store.Sessions().List(ctx, store.SessionFilter{LiveOnly: true, Limit: 1000})
	if err != nil {
		return err
	}
	gone := map[string]bool{}
	for _, s := range live {
		if _, seen := gone[s.AgentID]; !seen {
			a, err := b.o.Store.Agents().Get(ctx, s.AgentID)
			gone[s.AgentID] = err != nil || !a.DisabledAt.IsZero() || now.Sub(a.LastSeenAt) > 3*b.o.AgentOnline
		}
		if gone[s.AgentID] {
			b.fail(ctx, s, "its agent went away")
			b.audit(ctx, auth.Principal{}, "session.reaped", s)
		}
	}
	return nil
}
