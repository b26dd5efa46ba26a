package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/executor/workspace"
)

// setUp prepares Run: leftovers of a crashed agent removed, the runner
// directory checked, the credential loaded (or the agent enrolled), and
// the agent registered.
func (a *Agent) setUp(ctx context.Context) error {
	if err := a.checkRunnerDir(); err != nil {
		return err
	}
	if err := a.clearScratch(); err != nil {
		return err
	}
	cred, err := a.authenticate(ctx)
	if err != nil {
		return err
	}
	a.useCredential(cred)
	a.log = a.log.With("agent_id", cred.AgentID)
	a.leases = newLeaseTable(a.log)
	if err := checkLabels(a.cfg.Labels, cred.AllowedLabels); err != nil {
		return err
	}
	reg := apiv1.Register{Labels: a.cfg.Labels, MaxJobs: a.cfg.MaxJobs, Hostname: a.cfg.Hostname, Version: a.cfg.Version}
	if err := retry(ctx, a.log, a.cfg.MaxBackoff, "register", func(ctx context.Context) error {
		return a.cp.register(ctx, reg)
	}); err != nil {
		if errors.Is(err, ErrUnauthenticated) {
			return fmt.Errorf("%w; to enroll again, remove %s and pass a new --join-token", err, a.creds.path())
		}
		return err
	}
	return nil
}

// authenticate returns the saved credential for the server, or enrolls
// with the join token and saves the new one.
func (a *Agent) authenticate(ctx context.Context) (credential, error) {
	saved, err := a.creds.load()
	var missing string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		missing = fmt.Sprintf("no credential in %s", a.cfg.StateDir)
	case err != nil:
		return credential{}, err
	case saved.Server != a.cfg.Server:
		missing = fmt.Sprintf("no credential for %s in %s (it holds one for %s)", a.cfg.Server, a.cfg.StateDir, saved.Server)
	case !saved.ExpiresAt.After(time.Now()):
		missing = fmt.Sprintf("the credential in %s expired at %s", a.cfg.StateDir, saved.ExpiresAt.Format(time.RFC3339))
	default:
		if a.cfg.JoinToken != "" {
			a.log.Info("using the saved credential; the join token is not used", "path", a.creds.path())
		}
		return saved, nil
	}
	if a.cfg.JoinToken == "" {
		return credential{}, fmt.Errorf("%s and no join token: pass --join-token", missing)
	}
	a.log.Info("enrolling with the join token", "reason", missing)
	req := apiv1.Enroll{Name: a.cfg.Name, Labels: a.cfg.Labels, MaxJobs: a.cfg.MaxJobs, Hostname: a.cfg.Hostname, Version: a.cfg.Version}
	var enrolled apiv1.Enrolled
	err = retry(ctx, a.log, a.cfg.MaxBackoff, "enroll", func(ctx context.Context) error {
		var err error
		enrolled, err = a.cp.enroll(ctx, a.cfg.JoinToken, req)
		return err
	})
	if err != nil {
		return credential{}, err
	}
	cred := newCredential(a.cfg.Server, enrolled, time.Now())
	if err := a.creds.save(cred); err != nil {
		// The join token is spent: without the file, the next start
		// cannot enroll again.
		return credential{}, fmt.Errorf("enrolled as agent %s but could not keep its credential: %w", cred.AgentID, err)
	}
	a.log.Info("enrolled", "agent_id", cred.AgentID, "org", cred.Org, "path", a.creds.path())
	return cred, nil
}

// checkLabels verifies that the agent declares only labels its enrollment
// allows (none allowed means the server did not say).
func checkLabels(labels, allowed []string) error {
	if len(allowed) == 0 {
		return nil
	}
	var extra []string
	for _, l := range labels {
		if !slices.Contains(allowed, l) {
			extra = append(extra, l)
		}
	}
	if len(extra) > 0 {
		return fmt.Errorf("labels %v are not allowed by this agent's enrollment (allowed: %v)", extra, allowed)
	}
	return nil
}

// clearScratch removes what a crashed agent left in the scratch
// directories and the runner clones.
func (a *Agent) clearScratch() error {
	dirs := slices.Clone(a.cfg.ScratchDirs)
	if a.cfg.RunnerClones != "" {
		dirs = append(dirs, a.cfg.RunnerClones)
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("clear scratch dir: %w", err)
		}
		for _, e := range entries {
			if err := workspace.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("clear scratch dir %s: %w", dir, err)
			}
		}
		if len(entries) > 0 {
			a.log.Info("removed leftovers of an earlier run", "dir", dir, "entries", len(entries))
		}
	}
	return nil
}

// checkRunnerDir verifies the runner directory and prepares the clones'
// directory, reachable by the sandbox uids.
func (a *Agent) checkRunnerDir() error {
	if a.cfg.RunnerDir == "" {
		return nil
	}
	script := filepath.Join(a.cfg.RunnerDir, "run.sh")
	info, err := os.Stat(script)
	if err != nil {
		return fmt.Errorf("runner dir: %w", err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("runner dir: %s is not an executable file", script)
	}
	if err := os.MkdirAll(a.cfg.RunnerClones, 0o711); err != nil {
		return fmt.Errorf("runner clones: %w", err)
	}
	uid, gid, err := a.cfg.RunnerUIDs(0)
	if err != nil {
		return fmt.Errorf("runner uids: %w", err)
	}
	if err := checkTraversable(a.cfg.RunnerClones, uid, gid); err != nil {
		return fmt.Errorf("runner clones: %w", err)
	}
	return nil
}

// checkTraversable verifies that a process running as uid:gid, without
// supplementary groups or capabilities, may search every directory from /
// down to dir: bubblewrap, running as the job's uid, must reach the runner
// clone to bind it. ACLs are not considered.
func checkTraversable(dir string, uid, gid int) error {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner information", p)
		}
		var bit fs.FileMode = 0o001
		switch {
		case uid == 0:
			bit = 0
		case int(st.Uid) == uid:
			bit = 0o100
		case int(st.Gid) == gid:
			bit = 0o010
		}
		if info.Mode().Perm()&bit != bit {
			return fmt.Errorf("%s (mode %04o, owner %d:%d) cannot be traversed by uid %d: give it o+x", p, info.Mode().Perm(), st.Uid, st.Gid, uid)
		}
		if p == "/" {
			return nil
		}
	}
}
