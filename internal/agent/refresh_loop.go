package agent

import (
	"context"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
)

// minRefreshWait keeps the refresh loop from spinning on a credential
// whose lifetime is (by this host's clock) already mostly over.
const minRefreshWait = time.Second

// runRefreshLoop replaces the agent's credential with a fresh one when two
// thirds of its lifetime have passed, and saves it. It returns nil when ctx
// ends, and an error only when it is fatal to the agent (the server
// refused the credential).
func (a *Agent) runRefreshLoop(ctx context.Context) error {
	wait := time.Until(a.credential().refreshAt())
	for failures := 0; ; {
		if !pause(ctx, max(wait, minRefreshWait)) {
			return nil
		}
		err := a.refreshStep(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case fatal(err):
			return err
		case err != nil:
			a.log.Warn("refresh credential; will retry", "err", err, "failures", failures+1,
				"expires_at", a.credential().ExpiresAt)
			wait = apiclient.Backoff(failures, a.cfg.MaxBackoff)
			failures++
		default:
			failures = 0
			wait = time.Until(a.credential().refreshAt())
		}
	}
}

// refreshStep gets a fresh credential, uses it and saves it.
func (a *Agent) refreshStep(ctx context.Context) error {
	enrolled, err := a.cp.refresh(ctx)
	if err != nil {
		return err
	}
	old := a.credential()
	cred := newCredential(a.cfg.Server, enrolled, time.Now())
	if cred.AgentID == "" {
		cred.AgentID, cred.Org, cred.AllowedLabels = old.AgentID, old.Org, old.AllowedLabels
	}
	a.useCredential(cred)
	if err := a.creds.save(cred); err != nil {
		// Still valid in memory; the next start may find the old one.
		a.log.Error("keep the refreshed credential", "err", err)
	}
	a.log.Info("credential refreshed", "expires_at", cred.ExpiresAt)
	return nil
}
