package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/outputs"
	"github.com/nimbus-build/nimbus/internal/rbs/protocol/commandserverpb"
	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
	"github.com/nimbus-build/nimbus/internal/rbs/serverdir"
	"github.com/nimbus-build/nimbus/internal/rbs/srcsync"
)

// Bazel exit codes the proxy uses for its own failures.
const (
	exitCommandLine  = 2
	exitInterrupted  = 8
	exitRemoteError  = 34
	exitLocalEnv     = 36
	exitInternalFail = 37
)

// ErrCanceled is the cause of a command cancelled before it reached the
// remote server.
var ErrCanceled = errors.New("command cancelled")

// noSyncCommands do not read the workspace.
var noSyncCommands = []string{"shutdown", "version", "help", "license"}

// outputCommands are the commands whose outputs are brought back.
var outputCommands = []string{"build", "test", "run", "coverage"}

// Options configure a Proxy.
type Options struct {
	Args ServerArgs
	// Provider finds the remote server. When nil, every command fails
	// with ProviderErr (a broken configuration is reported to the user at
	// the first command, not by a start-up timeout).
	Provider    rbs.SessionProvider
	ProviderErr error
	// ClientEnv adds names to DefaultClientEnv.
	ClientEnv []string
	// FetchOutputs brings top-level outputs back after build, test and run.
	FetchOutputs bool
	// ClientHost is this machine's name (for the repository hash).
	ClientHost string
	Logger     *slog.Logger
}

// Proxy stands in for the Bazel server.
type Proxy struct {
	commandserverpb.UnimplementedCommandServerServer
	opts      Options
	log       *slog.Logger
	env       envFilter
	serverDir string
	info      serverdir.Info
	syncer    *srcsync.Client
	fetcher   *outputs.Fetcher

	mu         sync.Mutex
	commands   map[string]*command
	active     int
	lastActive time.Time
	lastBeat   time.Time
	shutdown   chan struct{}
	shutOnce   sync.Once

	remoteMu sync.Mutex // serializes provisioning and syncs
	remote   *remote
}

var _ commandserverpb.CommandServerServer = (*Proxy)(nil)

// command is one running Run call.
type command struct {
	cancel context.CancelCauseFunc

	mu        sync.Mutex
	remote    *remote
	remoteID  string
	cancelled bool
}

// New returns a proxy; Serve runs it.
func New(opts Options) (*Proxy, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	reqCookie, err := serverdir.NewCookie()
	if err != nil {
		return nil, err
	}
	respCookie, err := serverdir.NewCookie()
	if err != nil {
		return nil, err
	}
	log := opts.Logger.With("component", "rbs-proxy")
	stateDir := filepath.Join(opts.Args.OutputBase, "nimbus-rbs")
	syncer := srcsync.NewClient(opts.Args.Workspace, filepath.Join(stateDir, "sync-state"), log)
	if err := syncer.Watch(); err != nil {
		log.Warn("watching the workspace; every command will scan it", "err", err)
	}
	return &Proxy{
		opts:       opts,
		log:        log,
		env:        newEnvFilter(opts.ClientEnv),
		serverDir:  filepath.Join(opts.Args.OutputBase, "server"),
		info:       serverdir.Info{PID: os.Getpid(), RequestCookie: reqCookie, ResponseCookie: respCookie},
		syncer:     syncer,
		fetcher:    &outputs.Fetcher{OutputBase: opts.Args.OutputBase, Workspace: opts.Args.Workspace, Log: log},
		commands:   map[string]*command{},
		lastActive: time.Now(),
		shutdown:   make(chan struct{}),
	}, nil
}

// Serve publishes the handshake files for ln's address and serves the
// Bazel client until a shutdown command, max_idle_secs without commands,
// or the end of ctx. It then removes the files and releases the session.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	p.info.Address = ln.Addr().String()
	if err := serverdir.Write(p.serverDir, p.info); err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}))
	commandserverpb.RegisterCommandServerServer(srv, p)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	p.log.Info("serving", "address", p.info.Address, "workspace", p.opts.Args.Workspace)

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			p.log.Info("stopping", "cause", context.Cause(ctx))
			break loop
		case <-p.shutdown:
			p.log.Info("shutdown requested")
			break loop
		case serveErr = <-errc:
			break loop
		case <-tick.C:
			if p.idle() {
				p.log.Info("idle; exiting", "max_idle", p.opts.Args.MaxIdle)
				break loop
			}
			p.heartbeat(ctx)
		}
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
	}
	if err := serverdir.Remove(p.serverDir, p.info); err != nil {
		p.log.Warn("removing server files", "err", err)
	}
	p.release()
	p.syncer.Close()
	return serveErr
}

func (p *Proxy) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts.Args.MaxIdle > 0 && p.active == 0 && time.Since(p.lastActive) > p.opts.Args.MaxIdle
}

// heartbeat tells the provider the session is in use, when it was since
// the last heartbeat.
func (p *Proxy) heartbeat(ctx context.Context) {
	p.remoteMu.Lock()
	r := p.remote
	p.remoteMu.Unlock()
	if r == nil {
		return
	}
	interval := r.ep.HeartbeatInterval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	p.mu.Lock()
	due := time.Since(p.lastBeat) >= interval && (p.active > 0 || p.lastActive.After(p.lastBeat))
	if due {
		p.lastBeat = time.Now()
	}
	p.mu.Unlock()
	if !due {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.opts.Provider.Heartbeat(hctx, r.ep.SessionID); err != nil {
		p.log.Warn("heartbeat", "session_id", r.ep.SessionID, "err", err)
	}
}

func (p *Proxy) release() {
	p.remoteMu.Lock()
	r := p.remote
	p.remote = nil
	p.remoteMu.Unlock()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.opts.Provider.Release(ctx, r.ep.SessionID); err != nil {
		p.log.Warn("release", "session_id", r.ep.SessionID, "err", err)
	}
	r.conn.Close()
}

func (p *Proxy) begin() {
	p.mu.Lock()
	p.active++
	p.lastActive = time.Now()
	p.mu.Unlock()
}

func (p *Proxy) end() {
	p.mu.Lock()
	p.active--
	p.lastActive = time.Now()
	p.mu.Unlock()
}

func (p *Proxy) checkCookie(c string) error {
	if c != p.info.RequestCookie {
		p.log.Warn("request with a bad cookie refused")
		return status.Error(codes.PermissionDenied, "bad cookie")
	}
	return nil
}

// Ping answers the client's liveness check locally.
func (p *Proxy) Ping(_ context.Context, req *commandserverpb.PingRequest) (*commandserverpb.PingResponse, error) {
	if err := p.checkCookie(req.GetCookie()); err != nil {
		return nil, err
	}
	return &commandserverpb.PingResponse{Cookie: p.info.ResponseCookie}, nil
}

// Cancel cancels a command by the id this proxy gave it: the remote
// command when it runs, otherwise the provisioning or sync before it.
func (p *Proxy) Cancel(ctx context.Context, req *commandserverpb.CancelRequest) (*commandserverpb.CancelResponse, error) {
	if err := p.checkCookie(req.GetCookie()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	cmd := p.commands[req.GetCommandId()]
	p.mu.Unlock()
	if cmd != nil {
		cmd.mu.Lock()
		cmd.cancelled = true
		r, id := cmd.remote, cmd.remoteID
		cmd.mu.Unlock()
		p.log.Info("cancel", "command_id", req.GetCommandId(), "remote_id", id)
		if id != "" {
			p.cancelRemote(ctx, r, id)
		} else {
			cmd.cancel(ErrCanceled)
		}
	}
	return &commandserverpb.CancelResponse{Cookie: p.info.ResponseCookie}, nil
}

func (p *Proxy) cancelRemote(ctx context.Context, r *remote, id string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := r.tunnel.Cancel(r.ctx(cctx), &commandserverpb.CancelRequest{CommandId: id}); err != nil {
		p.log.Warn("forwarding cancel", "remote_id", id, "err", err)
	}
}

// Run runs one command remotely.
func (p *Proxy) Run(req *commandserverpb.RunRequest, stream grpc.ServerStreamingServer[commandserverpb.RunResponse]) error {
	if err := p.checkCookie(req.GetCookie()); err != nil {
		return err
	}
	p.begin()
	defer p.end()
	out := &clientStream{stream: stream, cookie: p.info.ResponseCookie}
	id := newCommandID()
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	cmd := &command{cancel: cancel}
	p.mu.Lock()
	p.commands[id] = cmd
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.commands, id)
		p.mu.Unlock()
	}()
	if err := out.send(&commandserverpb.RunResponse{CommandId: id}); err != nil {
		return err
	}
	if len(req.GetArg()) == 0 {
		return p.fail(out, exitCommandLine, errors.New("no command"))
	}
	name := string(req.GetArg()[0])
	p.log.Info("command", "command_id", id, "command", name)
	if name == "shutdown" {
		// The local server is this proxy: it exits. The remote session stays
		// warm for the next proxy until its idle TTL.
		p.shutOnce.Do(func() { close(p.shutdown) })
		return out.send(&commandserverpb.RunResponse{Finished: true, ExitCode: 0, TerminationExpected: true})
	}
	if p.opts.Provider == nil {
		return p.fail(out, exitLocalEnv, p.opts.ProviderErr)
	}
	for attempt := 0; ; attempt++ {
		err := p.runRemote(ctx, cmd, req, name, out)
		var retry errRetry
		if errors.As(err, &retry) && attempt == 0 {
			fmt.Fprintf(stderrWriter{out}, "nimbus: %v; starting over with a new session\n", retry.err)
			continue
		}
		var f errFinish
		if errors.As(err, &f) {
			return p.fail(out, f.code, f.err)
		}
		if errors.As(err, &retry) {
			return p.fail(out, exitRemoteError, retry.err)
		}
		return err
	}
}

// errFinish ends a command with an exit code and a message.
type errFinish struct {
	code int32
	err  error
}

func (e errFinish) Error() string { return e.err.Error() }

// errRetry means the session is gone before the command reached it; a new
// session may serve it.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }

func (p *Proxy) fail(out *clientStream, code int32, err error) error {
	if err == nil {
		err = errors.New("unknown error")
	}
	p.log.Warn("command failed", "exit_code", code, "err", err)
	out.output(nil, []byte("nimbus: "+err.Error()+"\n"))
	return out.send(&commandserverpb.RunResponse{Finished: true, ExitCode: code})
}

// interrupted turns a cancellation into exit code 8.
func interrupted(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), ErrCanceled) {
		return errFinish{exitInterrupted, errors.New("interrupted before the command reached the remote server")}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (p *Proxy) runRemote(ctx context.Context, cmd *command, req *commandserverpb.RunRequest, name string, out *clientStream) error {
	progress := stderrWriter{out}
	r, err := p.ensureRemote(ctx, progress)
	if err != nil {
		return interrupted(ctx, errFinish{exitRemoteError, err})
	}
	// The workspace syncs while a new server starts.
	readyCtx, cancelReady := context.WithCancel(ctx)
	defer cancelReady()
	ready := make(chan error, 1)
	go func() { ready <- p.ensureReady(readyCtx, r, progress) }()
	var syncErr error
	if !slices.Contains(noSyncCommands, name) {
		if syncErr = p.sync(ctx, r, progress); syncErr != nil {
			cancelReady()
		}
	}
	readyErr := <-ready
	if syncErr != nil {
		p.dropRemote(r)
		return interrupted(ctx, errRetry{fmt.Errorf("syncing the workspace: %w", syncErr)})
	}
	if readyErr != nil {
		p.dropRemote(r)
		return interrupted(ctx, errFinish{exitRemoteError, readyErr})
	}
	args, dropped := p.env.filterArgs(req.GetArg())
	if dropped > 0 {
		p.log.Debug("client environment filtered", "dropped", dropped)
	}
	up := proto.Clone(req).(*commandserverpb.RunRequest)
	up.Cookie, up.Arg = "", args
	fetch := p.opts.FetchOutputs && slices.Contains(outputCommands, name)

	cmd.mu.Lock()
	cmd.remote = r
	cmd.mu.Unlock()
	stream, err := r.tunnel.Run(r.ctx(ctx), &tunnelpb.RunRequest{Request: up, ReportOutputs: fetch})
	if err != nil {
		p.dropRemote(r)
		return interrupted(ctx, errRetry{fmt.Errorf("the remote session: %w", err)})
	}
	started := false
	for {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the remote server ended the command without finishing it")
			}
			p.dropRemote(r)
			if !started {
				return interrupted(ctx, errRetry{fmt.Errorf("the remote session: %w", err)})
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errFinish{exitInternalFail, fmt.Errorf("lost the remote Bazel server: %v", status.Convert(err).Message())}
		}
		started = true
		resp := msg.GetResponse()
		if resp == nil {
			continue
		}
		if rid := resp.GetCommandId(); rid != "" {
			cmd.mu.Lock()
			cmd.remoteID = rid
			cancelled := cmd.cancelled
			cmd.mu.Unlock()
			if cancelled {
				p.cancelRemote(ctx, r, rid)
			}
		}
		if err := out.output(resp.GetStandardOutput(), resp.GetStandardError()); err != nil {
			return err
		}
		if !resp.GetFinished() {
			continue
		}
		// Only bazel run may make the client exec something on this
		// machine; an agent cannot slip an exec request into other commands.
		execReq := resp.GetExecRequest()
		if name != "run" {
			execReq = nil
		}
		if fetch {
			p.fetchOutputs(ctx, r, msg.GetOutputs(), execReq, progress)
		}
		return out.send(&commandserverpb.RunResponse{
			Finished: true,
			ExitCode: resp.GetExitCode(),
			// The remote server ending is not this process ending: the client
			// must not wait for the proxy to exit (shutdown is handled locally).
			TerminationExpected: false,
			ExecRequest:         execReq,
			FailureDetail:       resp.GetFailureDetail(),
		})
	}
}

// ensureRemote returns the session, asking the provider for one on first
// use. The session's server may still be starting (see ensureReady).
func (p *Proxy) ensureRemote(ctx context.Context, progress io.Writer) (*remote, error) {
	p.remoteMu.Lock()
	defer p.remoteMu.Unlock()
	if p.remote != nil {
		return p.remote, nil
	}
	a := p.opts.Args
	fmt.Fprintf(progress, "nimbus: requesting a remote Bazel server for %s…\n", a.Workspace)
	ep, err := p.opts.Provider.GetServer(ctx, rbs.ServerRequest{
		RepoHash:       rbs.RepoHash(p.opts.ClientHost, a.Workspace),
		Workspace:      a.Workspace,
		OutputBase:     a.OutputBase,
		OutputUserRoot: a.OutputUserRoot,
		InstallMD5:     a.InstallMD5,
		StartupOptions: a.StartupOptions,
		ClientHost:     p.opts.ClientHost,
	})
	if err != nil {
		return nil, err
	}
	r, err := dial(ep)
	if err != nil {
		return nil, err
	}
	if ep.Reused {
		fmt.Fprintf(progress, "nimbus: attached to warm session %s on %s\n", ep.SessionID, ep.Agent)
	} else {
		fmt.Fprintf(progress, "nimbus: started session %s on %s\n", ep.SessionID, ep.Agent)
	}
	p.log.Info("session", "session_id", ep.SessionID, "agent", ep.Agent, "address", ep.Address, "reused", ep.Reused)
	p.remote = r
	p.mu.Lock()
	p.lastBeat = time.Now()
	p.mu.Unlock()
	return r, nil
}

// ensureReady waits, once per session, until its server answers, printing
// the agent's progress.
func (p *Proxy) ensureReady(ctx context.Context, r *remote, progress io.Writer) error {
	r.readyMu.Lock()
	defer r.readyMu.Unlock()
	if r.ready {
		return nil
	}
	if err := r.waitReady(ctx, progress); err != nil {
		return fmt.Errorf("waiting for the remote Bazel server: %w", err)
	}
	r.ready = true
	return nil
}

// dropRemote forgets a session that failed, so the next command asks for
// one again.
func (p *Proxy) dropRemote(r *remote) {
	p.remoteMu.Lock()
	defer p.remoteMu.Unlock()
	if p.remote == r {
		p.remote = nil
		r.conn.Close()
	}
}

func (p *Proxy) sync(ctx context.Context, r *remote, progress io.Writer) error {
	p.remoteMu.Lock()
	defer p.remoteMu.Unlock()
	open := func(ctx context.Context) (srcsync.SyncStreamClient, error) { return r.tunnel.Sync(r.ctx(ctx)) }
	st, err := p.syncer.Sync(ctx, r.ep.SessionID, open)
	if errors.Is(err, srcsync.ErrChanged) {
		st, err = p.syncer.Sync(ctx, r.ep.SessionID, open)
	}
	if err != nil {
		return err
	}
	if st.Skipped {
		p.log.Debug("workspace unchanged", "session_id", r.ep.SessionID, "duration", st.Duration)
		return nil
	}
	p.log.Info("synced workspace", "session_id", r.ep.SessionID, "full", st.Full, "entries", st.Scan.Entries,
		"hashed", st.Scan.Hashed, "upserted", st.Upserted, "deleted", st.Deleted, "blobs", st.Blobs, "bytes", st.Bytes,
		"written", st.Written, "duration", st.Duration)
	if st.Full || st.Duration > 2*time.Second {
		fmt.Fprintf(progress, "nimbus: synced %d files (%s) to the remote workspace in %.1fs\n", st.Written, humanBytes(st.Bytes), st.Duration.Seconds())
	}
	if len(st.Scan.Unreadable) > 0 {
		fmt.Fprintf(progress, "nimbus: warning: could not read %s (not synced)\n", strings.Join(st.Scan.Unreadable, ", "))
	}
	return nil
}

// fetchOutputs brings back the command's outputs, and for bazel run the
// binary and runfiles its exec request points at. A failure is reported
// but does not change the command's result.
func (p *Proxy) fetchOutputs(ctx context.Context, r *remote, o *tunnelpb.Outputs, er *commandserverpb.ExecRequest, progress io.Writer) {
	paths := o.GetPaths()
	paths = append(paths, execPaths(er, p.opts.Args.OutputBase)...)
	if len(paths) == 0 && len(o.GetWorkspaceLinks()) == 0 {
		return
	}
	st, err := p.fetcher.Fetch(r.ctx(ctx), r.tunnel, paths, o.GetWorkspaceLinks())
	p.log.Info("fetched outputs", "entries", st.Entries, "downloaded", st.Downloaded, "bytes", st.Bytes, "links", st.Links, "duration", st.Duration, "err", err)
	if err != nil {
		fmt.Fprintf(progress, "nimbus: warning: could not bring the outputs back: %v\n", err)
	} else if st.Duration > 2*time.Second {
		fmt.Fprintf(progress, "nimbus: brought back %d outputs (%s) in %.1fs\n", st.Downloaded, humanBytes(st.Bytes), st.Duration.Seconds())
	}
}

// execPaths returns the paths under outputBase that an exec request uses:
// its working directory and the words of its argv that are such paths (a
// runfiles directory also brings its binary).
func execPaths(er *commandserverpb.ExecRequest, outputBase string) []string {
	if er == nil {
		return nil
	}
	var words []string
	words = append(words, string(er.GetWorkingDirectory()))
	for _, a := range er.GetArgv() {
		words = append(words, strings.FieldsFunc(string(a), func(r rune) bool { return r == ' ' || r == '\'' || r == '"' || r == '\n' || r == ';' })...)
	}
	var out []string
	for _, w := range words {
		w = filepath.Clean(w)
		if !strings.HasPrefix(w, outputBase+"/") {
			continue
		}
		if before, _, ok := strings.Cut(w, ".runfiles/"); ok {
			out = append(out, before, before+".runfiles")
			continue
		}
		if before, ok := strings.CutSuffix(w, ".runfiles"); ok {
			out = append(out, before, w)
			continue
		}
		out = append(out, w)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func newCommandID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
