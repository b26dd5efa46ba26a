package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/commandserverpb"
	"github.com/nimbus-build/nimbus/internal/rbs/serverdir"
)

// State is where a supervised Bazel server is in its life.
type State string

const (
	StateStarting State = "starting"
	StateReady    State = "ready"
	StateFailed   State = "failed"
	StateStopped  State = "stopped"
)

// ErrServerFailed means the Bazel server crashed too often to be restarted.
var ErrServerFailed = errors.New("bazel server failed")

// crash policy: more than maxCrashes within crashWindow and the server is
// given up on.
const (
	maxCrashes  = 5
	crashWindow = 5 * time.Minute
)

// SupervisorConfig describes the server to run.
type SupervisorConfig struct {
	// Run runs the server once, in its sandbox, until it exits (its error
	// says how) or ctx ends, when Run must stop it and return once nothing
	// of it is left.
	Run func(ctx context.Context) error
	// Dial connects to the address the server wrote in its handshake files
	// (its sandbox's loopback, reached from inside the sandbox's network).
	Dial func(ctx context.Context, address string) (net.Conn, error)
	// ServerDir is the server's <output_base>/server directory, relative
	// to Root; the handshake files are read through Root.
	Root      *os.Root
	ServerDir string
	// Prepare runs before every start (write javalog.properties, remove
	// stale handshake files).
	Prepare      func() error
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// Supervisor runs one Bazel server: starts it, waits until it answers,
// restarts it when it dies unexpectedly (with backoff, and gives up after
// repeated crashes), and stops it when its Run context ends.
type Supervisor struct {
	cfg SupervisorConfig

	mu       sync.Mutex
	state    State
	progress string
	err      error
	client   commandserverpb.CommandServerClient
	info     serverdir.Info
	changed  chan struct{} // closed and replaced on every change
	restarts int
	crashes  []time.Time
}

// NewSupervisor returns a supervisor; Run starts it.
func NewSupervisor(cfg SupervisorConfig) *Supervisor {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	return &Supervisor{cfg: cfg, state: StateStarting, progress: "starting the Bazel server", changed: make(chan struct{})}
}

func (s *Supervisor) set(state State, progress string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.progress, s.err = state, progress, err
	if state != StateReady {
		s.client = nil
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// Status returns the current state, a line of progress and the number of
// restarts so far.
func (s *Supervisor) Status() (State, string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.progress, s.restarts
}

// Watch returns the current state and a channel closed at the next change.
func (s *Supervisor) Watch() (State, string, error, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.progress, s.err, s.changed
}

// Client waits until the server is ready and returns a client for it with
// its handshake (cookies).
func (s *Supervisor) Client(ctx context.Context) (commandserverpb.CommandServerClient, serverdir.Info, error) {
	for {
		s.mu.Lock()
		state, client, info, err, changed := s.state, s.client, s.info, s.err, s.changed
		s.mu.Unlock()
		switch state {
		case StateReady:
			return client, info, nil
		case StateFailed:
			return nil, serverdir.Info{}, err
		case StateStopped:
			return nil, serverdir.Info{}, errors.New("the session was stopped")
		}
		select {
		case <-ctx.Done():
			return nil, serverdir.Info{}, context.Cause(ctx)
		case <-changed:
		}
	}
}

// Run supervises the server until ctx ends, then stops it. It returns nil
// after a stop, or ErrServerFailed.
func (s *Supervisor) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		crashed, err := s.runOnce(ctx)
		if ctx.Err() != nil {
			s.set(StateStopped, "stopped", nil)
			return nil
		}
		now := time.Now()
		s.mu.Lock()
		s.restarts++
		s.crashes = append(s.crashes, now)
		for len(s.crashes) > 0 && now.Sub(s.crashes[0]) > crashWindow {
			s.crashes = s.crashes[1:]
		}
		tooMany := len(s.crashes) > maxCrashes
		s.mu.Unlock()
		if tooMany {
			ferr := fmt.Errorf("%w: %d crashes in %v, last: %v", ErrServerFailed, len(s.crashes), crashWindow, err)
			s.set(StateFailed, "the Bazel server keeps crashing", ferr)
			return ferr
		}
		s.cfg.Logger.Warn("bazel server ended; restarting", "crashed_while", crashed, "err", err, "backoff", backoff)
		s.set(StateStarting, fmt.Sprintf("restarting the Bazel server after %s: %v", crashed, err), nil)
		delay := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		select {
		case <-ctx.Done():
			s.set(StateStopped, "stopped", nil)
			return nil
		case <-time.After(delay):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// runOnce starts the server and returns when it exits (crashed says during
// what) or, after ctx ends, once it is stopped.
func (s *Supervisor) runOnce(ctx context.Context) (crashed string, err error) {
	if s.cfg.Prepare != nil {
		if err := s.cfg.Prepare(); err != nil {
			return "preparing", err
		}
	}
	s.set(StateStarting, "starting the Bazel server", nil)
	pctx, kill := context.WithCancel(context.WithoutCancel(ctx))
	p := &process{kill: kill, done: make(chan struct{})}
	go func() { p.err = s.cfg.Run(pctx); close(p.done) }()

	readyCtx, cancelReady := context.WithTimeout(ctx, s.cfg.StartTimeout)
	conn, client, info, err := s.waitReady(readyCtx, p)
	cancelReady()
	if err != nil {
		p.stopNow()
		return "starting", err
	}
	defer conn.Close()
	s.mu.Lock()
	s.client, s.info = client, info
	s.mu.Unlock()
	s.set(StateReady, "the Bazel server is ready", nil) // keeps the client
	s.cfg.Logger.Info("bazel server ready", "address", info.Address)

	select {
	case <-p.done:
		return "running", p.exitErr()
	case <-ctx.Done():
		s.stop(client, info, p)
		return "", nil
	}
}

// waitReady polls for the handshake files and pings the server.
func (s *Supervisor) waitReady(ctx context.Context, p *process) (*grpc.ClientConn, commandserverpb.CommandServerClient, serverdir.Info, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := serverdir.ReadFS(s.cfg.Root.FS(), s.cfg.ServerDir)
		if err == nil {
			conn, err := grpc.NewClient("passthrough:///"+info.Address, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithContextDialer(s.cfg.Dial))
			if err == nil {
				client := commandserverpb.NewCommandServerClient(conn)
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				resp, perr := client.Ping(pctx, &commandserverpb.PingRequest{Cookie: info.RequestCookie})
				cancel()
				if perr == nil && resp.GetCookie() == info.ResponseCookie {
					return conn, client, info, nil
				}
				conn.Close()
			}
		}
		select {
		case <-ctx.Done():
			return nil, nil, serverdir.Info{}, fmt.Errorf("waiting for the Bazel server: %w", context.Cause(ctx))
		case <-p.done:
			return nil, nil, serverdir.Info{}, fmt.Errorf("bazel server ended during start-up: %w", p.exitErr())
		case <-tick.C:
		}
	}
}

// stop asks the server to shut down, then kills it if it lingers.
func (s *Supervisor) stop(client commandserverpb.CommandServerClient, info serverdir.Info, p *process) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := client.Run(ctx, &commandserverpb.RunRequest{
		Cookie: info.RequestCookie, Arg: [][]byte{[]byte("shutdown")}, ClientDescription: "nimbus agent",
	})
	if err == nil {
		for {
			if _, err := stream.Recv(); err != nil {
				break
			}
		}
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stopNow()
	}
	p.stopNow() // the sandbox ends with its server; make sure of it
}

// process is a started server; done is closed once nothing of it is left.
type process struct {
	kill context.CancelFunc
	done chan struct{}
	err  error
}

func (p *process) exitErr() error {
	if p.err == nil {
		return errors.New("exited")
	}
	return p.err
}

// stopNow ends the sandbox (the executor kills its whole pid namespace)
// and waits until nothing of it is left.
func (p *process) stopNow() {
	p.kill()
	<-p.done
}
