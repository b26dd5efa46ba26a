package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/outputs"
	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
	"github.com/nimbus-build/nimbus/internal/rbs/srcsync"
)

// Errors of StartSession.
var (
	// ErrVersionMismatch: the session needs another Bazel release.
	ErrVersionMismatch = errors.New("bazel version mismatch")
	// ErrNoCapacity: the agent runs as many sessions as it may.
	ErrNoCapacity = errors.New("agent has no capacity for another session")
	// ErrBusy: another session already uses this user's repository storage.
	ErrBusy = errors.New("another session uses this repository's storage")
	// ErrClosed: the host is shutting down.
	ErrClosed = errors.New("host is closed")
)

// UIDRange is the host uids sessions' sandboxes run as, one per session.
type UIDRange struct {
	First int // e.g. 61000
	Count int
}

// Options configure a Host.
type Options struct {
	// StorageRoot holds every session's files (see Storage).
	StorageRoot string
	// Listen is the tunnel's address, e.g. ":7443" (tests: "127.0.0.1:0").
	Listen string
	// Advertise is the host:port put in endpoints; the listener's address
	// when empty.
	Advertise string
	// Certificate is the agent's certificate (an agent identity), Roots the
	// CA pool that issued users' certificates.
	Certificate tls.Certificate
	Roots       *x509.CertPool
	Bazel       Bazel
	// Executor runs the Bazel servers (the Host owns it and closes it
	// when it is an io.Closer): the jobs' sandbox (bubblewrap, the
	// syscall filter, the /etc allow-list, cgroup limits), with its own
	// work root and uids (required). A session's slot n runs as the
	// executor's uid for n, which must be UIDs.First+n.
	Executor executor.Executor
	// Limits bound each session's server (0: none).
	Limits executor.Limits
	// Networks gives each session a network of its own under its egress
	// policy (the jobs' netpolicy); nil, for an agent that is not root:
	// servers share the agent's network.
	Networks *netpolicy.Manager
	// UIDs are required when the agent runs as root: sandboxes then run as
	// these unprivileged uids (gid = uid), never as root.
	UIDs UIDRange
	// MaxSessions bounds concurrent sessions (default: UIDs.Count, or 4).
	MaxSessions int
	// StartTimeout bounds a server's start-up (default 2 minutes).
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// maxServerLog is the size past which a session's server log (its
// stdout and stderr, agent/jvm.out) is rotated when the session starts.
const maxServerLog = 16 << 20

// Endpoint is where a started session's proxy connects.
type Endpoint struct {
	SessionID string
	Address   string       // the tunnel, host:port
	Agent     pki.Identity // the identity the proxy must see
}

// Host runs an agent's remote Bazel sessions and serves their tunnel.
type Host struct {
	opts     Options
	log      *slog.Logger
	storage  *Storage
	bazel    Bazel
	identity pki.Identity
	certs    *pki.CertHolder
	ln       net.Listener
	srv      *grpc.Server
	reserved []string

	mu       sync.Mutex
	closed   bool
	sessions map[string]*Session
	pending  map[string]pending // sessions being prepared, by id
	wg       sync.WaitGroup
}

// pending reserves a session's storage and uid while it is prepared
// outside the lock (preparing may chown a large tree).
type pending struct {
	base string
	uid  int
	slot int
}

// NewHost checks the options, finds Bazel and bubblewrap and binds the
// tunnel's listener. Serve serves it.
func NewHost(opts Options) (*Host, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	log := opts.Logger.With("component", "rbs-host")
	if len(opts.Certificate.Certificate) == 0 || opts.Roots == nil {
		return nil, errors.New("rbs host: certificate and roots are required")
	}
	certs, err := pki.NewCertHolder(opts.Certificate)
	if err != nil || certs.Identity().Kind != pki.KindAgent {
		return nil, fmt.Errorf("rbs host: certificate must carry an agent identity (%v)", err)
	}
	identity := certs.Identity()
	if os.Geteuid() == 0 && opts.UIDs.Count <= 0 {
		return nil, errors.New("rbs host: running as root needs a range of unprivileged uids (UIDs) for the sandboxes")
	}
	if opts.UIDs.Count > 0 && opts.UIDs.First < 1000 {
		return nil, fmt.Errorf("rbs host: uids from %d are not unprivileged", opts.UIDs.First)
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 4
		if opts.UIDs.Count > 0 {
			opts.MaxSessions = opts.UIDs.Count
		}
	}
	if opts.UIDs.Count > 0 && opts.MaxSessions > opts.UIDs.Count {
		return nil, errors.New("rbs host: more sessions than uids")
	}
	if opts.Executor == nil {
		return nil, errors.New("rbs host: an executor is required")
	}
	bazel, err := opts.Bazel.Resolve()
	if err != nil {
		return nil, fmt.Errorf("rbs host: %w", err)
	}
	storage, err := NewStorage(opts.StorageRoot)
	if err != nil {
		return nil, fmt.Errorf("rbs host: %w", err)
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("rbs host: %w", err)
	}
	h := &Host{
		opts: opts, log: log, storage: storage, bazel: bazel, identity: identity, certs: certs, ln: ln,
		sessions: map[string]*Session{},
		pending:  map[string]pending{},
		reserved: []string{bazel.InstallBase, bazel.JavaHome, storage.Root(), "/workspace"},
	}
	tun := &Tunnel{lookup: h.lookup, log: log}
	tlsCfg := pki.ServerConfigFrom(opts.Roots, certs, func(id pki.Identity) error {
		if id.Kind != pki.KindUser {
			return fmt.Errorf("%s is not a user", id)
		}
		return nil
	})
	h.srv = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.ChainUnaryInterceptor(tun.UnaryInterceptor),
		grpc.ChainStreamInterceptor(tun.StreamInterceptor),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	tunnelpb.RegisterTunnelServer(h.srv, tun)
	return h, nil
}

// SetCertificate renews the tunnel's certificate: handshakes from now on
// present cert, which must carry the agent's identity.
func (h *Host) SetCertificate(cert tls.Certificate) error { return h.certs.Set(cert) }

// Identity is the agent's identity, which proxies verify.
func (h *Host) Identity() pki.Identity { return h.identity }

// InstallMD5 is the Bazel release this host serves.
func (h *Host) InstallMD5() string { return h.bazel.InstallMD5 }

// Addr is the tunnel's advertised address.
func (h *Host) Addr() string {
	if h.opts.Advertise != "" {
		return h.opts.Advertise
	}
	return h.ln.Addr().String()
}

// Serve serves the tunnel until ctx ends, then stops every session.
func (h *Host) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- h.srv.Serve(h.ln) }()
	select {
	case <-ctx.Done():
		h.Close()
		<-errc
		return nil
	case err := <-errc:
		h.Close()
		return fmt.Errorf("rbs tunnel: %w", err)
	}
}

// Close stops every session and the tunnel.
func (h *Host) Close() {
	h.mu.Lock()
	h.closed = true
	all := make([]*Session, 0, len(h.sessions))
	for _, s := range h.sessions {
		all = append(all, s)
	}
	h.sessions = map[string]*Session{}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(s.stop)
	}
	wg.Wait()
	h.srv.Stop()
	h.wg.Wait()
	// The host owns its executor: nothing else runs in it.
	if c, ok := h.opts.Executor.(io.Closer); ok {
		if err := c.Close(); err != nil {
			h.log.Warn("close the sessions' executor", "err", err)
		}
	}
}

func (h *Host) lookup(id string) (*Session, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sessions[id]
	return s, ok
}

// Sessions describes the running sessions, by id.
func (h *Host) Sessions() []SessionInfo {
	h.mu.Lock()
	all := make([]*Session, 0, len(h.sessions))
	for _, s := range h.sessions {
		all = append(all, s)
	}
	h.mu.Unlock()
	out := make([]SessionInfo, 0, len(all))
	for _, s := range all {
		out = append(out, s.Info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// StartSession starts (or, for a running id, returns) a session. It
// returns once the server is launched; the tunnel's Ready reports when it
// answers.
func (h *Host) StartSession(ctx context.Context, spec SessionSpec) (Endpoint, error) {
	if err := validateSpec(spec, h.reserved); err != nil {
		return Endpoint{}, fmt.Errorf("start session: %w", err)
	}
	if spec.InstallMD5 != h.bazel.InstallMD5 {
		return Endpoint{}, fmt.Errorf("start session: %w: the client has install_md5 %s, this agent %s", ErrVersionMismatch, spec.InstallMD5, h.bazel.InstallMD5)
	}
	opts, _ := rbs.PassThroughStartupOptions(spec.StartupOptions)
	ep := Endpoint{SessionID: spec.ID, Address: h.Addr(), Agent: h.identity}

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return Endpoint{}, ErrClosed
	}
	if s, ok := h.sessions[spec.ID]; ok {
		h.mu.Unlock()
		if s.spec.User != spec.User || s.spec.RepoHash != spec.RepoHash {
			return Endpoint{}, fmt.Errorf("start session: id %s is taken by another session", spec.ID)
		}
		return ep, nil
	}
	if _, ok := h.pending[spec.ID]; ok {
		h.mu.Unlock()
		return Endpoint{}, fmt.Errorf("start session: %w (session %s is starting)", ErrBusy, spec.ID)
	}
	base, _ := h.storage.Dir(spec.User.Org, spec.User.Name, spec.RepoHash)
	for _, s := range h.sessions {
		if s.dirs.Base == base {
			h.mu.Unlock()
			return Endpoint{}, fmt.Errorf("start session: %w (session %s)", ErrBusy, s.spec.ID)
		}
	}
	for id, p := range h.pending {
		if p.base == base {
			h.mu.Unlock()
			return Endpoint{}, fmt.Errorf("start session: %w (session %s)", ErrBusy, id)
		}
	}
	if len(h.sessions)+len(h.pending) >= h.opts.MaxSessions {
		n := len(h.sessions) + len(h.pending)
		h.mu.Unlock()
		return Endpoint{}, fmt.Errorf("start session: %w (%d running)", ErrNoCapacity, n)
	}
	uid := h.pickUID(spec)
	slot := h.pickSlot(uid)
	h.pending[spec.ID] = pending{base: base, uid: uid, slot: slot}
	h.mu.Unlock()

	s, err := h.newSession(ctx, spec, opts, uid, slot)

	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.pending, spec.ID)
	if err != nil {
		return Endpoint{}, fmt.Errorf("start session: %w", err)
	}
	if h.closed {
		s.release()
		return Endpoint{}, ErrClosed
	}
	h.sessions[spec.ID] = s
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(s.done)
		defer s.release()
		if err := s.sup.Run(sctx); err != nil {
			s.log.Error("session server failed", "err", err)
		}
	}()
	h.log.Info("session started", "session_id", spec.ID, "user", spec.User.String(), "uid", uid, "storage", s.dirs.Base)
	return ep, nil
}

// pickSlot is the executor slot of a session running as uid: uid's offset
// in UIDs, or (an agent that is not root) the first slot free. Called with
// h.mu held.
func (h *Host) pickSlot(uid int) int {
	if uid >= 0 {
		return uid - h.opts.UIDs.First
	}
	used := map[int]bool{}
	for _, s := range h.sessions {
		used[s.slot] = true
	}
	for _, p := range h.pending {
		used[p.slot] = true
	}
	slot := 0
	for used[slot] {
		slot++
	}
	return slot
}

// pickUID prefers the uid that owns the session's storage already, so its
// files need no chown. Called with h.mu held.
func (h *Host) pickUID(spec SessionSpec) int {
	if h.opts.UIDs.Count <= 0 {
		return -1
	}
	used := map[int]bool{}
	for _, s := range h.sessions {
		used[s.uid] = true
	}
	for _, p := range h.pending {
		used[p.uid] = true
	}
	if owner, ok := h.storage.OwnerOf(spec.User.Org, spec.User.Name, spec.RepoHash); ok &&
		owner >= h.opts.UIDs.First && owner < h.opts.UIDs.First+h.opts.UIDs.Count && !used[owner] {
		return owner
	}
	for u := h.opts.UIDs.First; u < h.opts.UIDs.First+h.opts.UIDs.Count; u++ {
		if !used[u] {
			return u
		}
	}
	return -1 // unreachable: MaxSessions <= Count
}

func (h *Host) newSession(ctx context.Context, spec SessionSpec, startupOptions []string, uid, slot int) (_ *Session, err error) {
	gid := uid
	dirs, err := h.storage.Prepare(spec.User.Org, spec.User.Name, spec.RepoHash, spec.Mirror, uid, gid)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dirs.Base)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dirs.Agent, "jvm.out")
	if st, err := os.Stat(logPath); err == nil && st.Size() > maxServerLog {
		os.Rename(logPath, logPath+".1") // keep one previous log
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		root.Close()
		return nil, err
	}
	log := h.log.With("session_id", spec.ID)
	s := &Session{
		spec: spec, dirs: dirs, uid: uid, gid: gid, slot: slot, root: root, log: log, logFile: logFile,
		started: time.Now(), done: make(chan struct{}),
	}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	dial := (&net.Dialer{}).DialContext
	network := executor.HostNetwork
	if h.opts.Networks != nil {
		pol := spec.Egress
		if pol.Mode == "" {
			pol.Mode = string(netpolicy.ModeOffline)
		}
		s.net, err = h.opts.Networks.Prepare(ctx, netpolicy.Spec{ID: "rbs-" + spec.ID, Policy: netpolicy.PolicyFrom(pol)})
		if err != nil {
			return nil, fmt.Errorf("session network: %w", err)
		}
		network, dial = s.net, s.net.Netns().DialContext
		log.Info("session network ready", "egress_mode", s.net.Mode(), "address", s.net.Addr())
	}
	s.touch()
	s.tree = srcsync.NewTree(dirs.Workspace, filepath.Join(dirs.Agent, "staging"), filepath.Join(dirs.Agent, "sync-state"), uid, gid, log)
	s.lister = &outputs.Lister{Root: root, ToStorage: s.toStorage, Follow: s.followOutput, Cache: &outputs.DigestCache{}}
	run := executor.Spec{
		JobID:   "rbs-" + spec.ID,
		Argv:    h.bazel.ServerCommand(spec.Mirror, startupOptions),
		Env:     s.env(),
		Binds:   s.binds(h.bazel),
		Dir:     spec.Workspace,
		Output:  logFile,
		Slot:    slot,
		Limits:  h.opts.Limits,
		Network: network,
	}
	s.sup = NewSupervisor(SupervisorConfig{
		Run: func(ctx context.Context) error {
			res, err := h.opts.Executor.Run(ctx, run)
			switch {
			case err != nil:
				return err
			case res.Cause != nil && ctx.Err() == nil:
				return fmt.Errorf("stopped: %w", res.Cause)
			case ctx.Err() != nil:
				return nil
			}
			return fmt.Errorf("exit status %d", res.ExitCode)
		},
		Dial:         func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) },
		Root:         root,
		ServerDir:    filepath.Join(s.rel(dirs.OutputBase), "server"),
		Prepare:      s.prepare,
		StartTimeout: h.opts.StartTimeout,
		Logger:       log,
	})
	return s, nil
}

// StopSession stops a session's server and forgets the session; its
// storage stays for the next session of the same user and repository.
func (h *Host) StopSession(ctx context.Context, id string) error {
	h.mu.Lock()
	s, ok := h.sessions[id]
	delete(h.sessions, id)
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("stop session %s: not found", id)
	}
	done := make(chan struct{})
	go func() { s.stop(); close(done) }()
	select {
	case <-done:
		h.log.Info("session stopped", "session_id", id)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop session %s: %w", id, ctx.Err())
	}
}
