package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/outputs"
	"github.com/nimbus-build/nimbus/internal/rbs/srcsync"
)

// SessionSpec is what the control plane asks an agent to start.
type SessionSpec struct {
	// ID is the control plane's id of the session (a safe name).
	ID string
	// User is the only identity allowed to use the session's tunnel.
	User     pki.Identity
	RepoHash string
	Mirror
	// InstallMD5 must be this agent's Bazel install_md5.
	InstallMD5 string
	// StartupOptions are passed to the server (see rbs.PassThroughStartupOptions).
	StartupOptions []string
	// Egress is the session's network policy (empty: offline), enforced
	// when the agent gives sessions networks.
	Egress apiv1.EgressPolicy
}

// SessionInfo describes a running session.
type SessionInfo struct {
	ID        string
	User      pki.Identity
	RepoHash  string
	Workspace string
	UID       int
	State     State
	Progress  string
	Restarts  int
	Started   time.Time
	LastUsed  time.Time
	LastSync  srcsync.Result
	Storage   string
}

// Session is one remote Bazel server and its storage.
type Session struct {
	spec    SessionSpec
	dirs    SessionDirs
	uid     int
	gid     int
	slot    int                // the executor's slot
	net     *netpolicy.Sandbox // nil: the agent's network
	root    *os.Root           // dirs.Base
	sup     *Supervisor
	tree    *srcsync.Tree
	lister  *outputs.Lister
	log     *slog.Logger
	logFile *os.File

	started  time.Time
	lastUsed atomic.Int64
	bepSeq   atomic.Int64

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (s *Session) touch() { s.lastUsed.Store(time.Now().UnixNano()) }

// Info describes the session.
func (s *Session) Info() SessionInfo {
	state, progress, restarts := s.sup.Status()
	return SessionInfo{
		ID: s.spec.ID, User: s.spec.User, RepoHash: s.spec.RepoHash, Workspace: s.spec.Workspace,
		UID: s.uid, State: state, Progress: progress, Restarts: restarts,
		Started: s.started, LastUsed: time.Unix(0, s.lastUsed.Load()), LastSync: s.tree.Last(),
		Storage: s.dirs.Base,
	}
}

// rel returns a storage path relative to the session's base.
func (s *Session) rel(abs string) string {
	r, _ := within(s.dirs.Base, abs)
	return r
}

// prepare runs before every server start: it writes the logging
// configuration the client would have written, creates the server
// directory and removes a previous server's handshake files. All through
// the session's root: the sandbox can write these directories.
func (s *Session) prepare() error {
	ob := s.rel(s.dirs.OutputBase)
	if err := s.writeFile(filepath.Join(ob, "javalog.properties"), javalogProperties(s.spec.OutputBase)); err != nil {
		return err
	}
	serverDir := filepath.Join(ob, "server")
	if err := s.mkdir(serverDir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{"command_port", "request_cookie", "response_cookie", "server_info.rawproto", "server.pid.txt"} {
		if err := s.root.Remove(filepath.Join(serverDir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale server file: %w", err)
		}
	}
	return s.mkdir(filepath.Join(ob, "nimbus-rbs"), 0o700)
}

func (s *Session) mkdir(rel string, mode fs.FileMode) error {
	if err := s.root.MkdirAll(rel, mode); err != nil {
		return fmt.Errorf("session dir: %w", err)
	}
	if st, err := s.root.Lstat(rel); err != nil || !st.IsDir() {
		return fmt.Errorf("session dir %s is not a directory", rel)
	}
	if s.uid >= 0 {
		if err := s.root.Lchown(rel, s.uid, s.gid); err != nil {
			return fmt.Errorf("session dir: %w", err)
		}
	}
	return nil
}

func (s *Session) writeFile(rel, content string) error {
	if err := s.root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	f, err := s.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	_, err = io.WriteString(f, content)
	if err == nil && s.uid >= 0 {
		err = f.Chown(s.uid, s.gid)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	return nil
}

// newBEPPath returns a fresh build event file: its developer path (for the
// server's flag) and its path relative to the session root (for reading).
func (s *Session) newBEPPath() (dev, rel string) {
	name := fmt.Sprintf("bep-%d.json", s.bepSeq.Add(1))
	return filepath.Join(s.spec.OutputBase, "nimbus-rbs", name), filepath.Join(s.rel(s.dirs.OutputBase), "nimbus-rbs", name)
}

// readOutputs parses and removes a build event file.
func (s *Session) readOutputs(rel string) ([]string, error) {
	f, err := s.root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer s.root.Remove(rel)
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, errors.New("build event file is not a regular file")
	}
	return outputs.ParseBEP(io.LimitReader(f, 512<<20))
}

// env is the Bazel server's environment.
func (s *Session) env() map[string]string {
	return map[string]string{
		"PATH":   "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME":   "/tmp",
		"TMPDIR": "/tmp",
		"LANG":   "C.UTF-8",
		"USER":   s.spec.User.Name,
	}
}

// binds are the session's storage at the developer's paths, and the
// Bazel installation and JDK where /usr does not hold them already.
func (s *Session) binds(b Bazel) []executor.Bind {
	out := []executor.Bind{
		{Source: s.dirs.Workspace, Target: s.spec.Workspace},
		{Source: s.dirs.OutputUserRoot, Target: s.spec.OutputUserRoot},
	}
	if _, under := within(s.spec.OutputUserRoot, s.spec.OutputBase); !under {
		out = append(out, executor.Bind{Source: s.dirs.OutputBase, Target: s.spec.OutputBase})
	}
	for _, p := range []string{b.InstallBase, b.JavaHome} {
		if _, under := within("/usr", filepath.Clean(p)); !under {
			out = append(out, executor.Bind{Source: p, Target: p, ReadOnly: true})
		}
	}
	return out
}

// release gives back what the session holds once its server is gone:
// its network (with a log line of what it did), its storage root and
// its log file.
func (s *Session) release() {
	if s.net != nil {
		rep, err := s.net.Close()
		if err != nil {
			s.log.Warn("close the session's network", "err", err)
		}
		s.log.Info("session network closed", "bytes_out", rep.BytesOut, "bytes_in", rep.BytesIn,
			"refused", len(rep.Refused), "names", len(rep.Names))
		s.net = nil
	}
	s.root.Close()
	s.logFile.Close()
}

// followOutput reports whether a symlink target is in the output base.
func (s *Session) followOutput(dev string) bool {
	_, ok := within(s.spec.OutputBase, dev)
	return ok
}

func (s *Session) toStorage(dev string) (string, bool) { return s.spec.Mirror.ToStorage(s.dirs, dev) }

// stop ends the session's server and waits for it.
func (s *Session) stop() {
	s.once.Do(func() { s.cancel() })
	<-s.done
}

func validateSpec(spec SessionSpec, reserved []string) error {
	if err := pki.ValidateName(spec.ID); err != nil {
		return fmt.Errorf("session id: %w", err)
	}
	if spec.User.Kind != pki.KindUser {
		return fmt.Errorf("session user %s is not a user identity", spec.User)
	}
	if err := spec.User.Validate(); err != nil {
		return fmt.Errorf("session user: %w", err)
	}
	if err := rbs.ValidateRepoHash(spec.RepoHash); err != nil {
		return err
	}
	if err := spec.Mirror.Validate(reserved...); err != nil {
		return fmt.Errorf("session paths: %w", err)
	}
	if _, err := rbs.PassThroughStartupOptions(spec.StartupOptions); err != nil {
		return err
	}
	if strings.TrimSpace(spec.InstallMD5) == "" {
		return errors.New("session install_md5: missing")
	}
	return nil
}
