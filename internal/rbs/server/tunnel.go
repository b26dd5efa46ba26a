package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/protocol/commandserverpb"
	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
)

// outputCommands are the commands whose top-level outputs are reported.
var outputCommands = []string{"build", "test", "run", "coverage"}

const maxArgs = 100_000

// Tunnel serves tunnelpb.Tunnel for a Host's sessions.
type Tunnel struct {
	tunnelpb.UnimplementedTunnelServer
	lookup func(id string) (*Session, bool)
	log    *slog.Logger
}

var _ tunnelpb.TunnelServer = (*Tunnel)(nil)

type sessionKey struct{}

// authorize finds the call's session and checks that the caller's
// certificate identity is its user. Unknown sessions and other users get
// the same answer, so ids of others' sessions cannot be probed.
func (t *Tunnel) authorize(ctx context.Context) (context.Context, error) {
	denied := status.Error(codes.PermissionDenied, "no such session for this user")
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer")
	}
	tlsInfo, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "not a TLS connection")
	}
	id, err := pki.PeerIdentity(tlsInfo.State)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	md, _ := metadata.FromIncomingContext(ctx)
	ids := md.Get(rbs.SessionMetadataKey)
	if len(ids) != 1 {
		return nil, status.Error(codes.InvalidArgument, "name exactly one session in "+rbs.SessionMetadataKey)
	}
	s, ok := t.lookup(ids[0])
	if !ok || s.spec.User != id {
		t.log.Warn("tunnel call refused", "session_id", ids[0], "caller", id.String())
		return nil, denied
	}
	s.touch()
	return context.WithValue(ctx, sessionKey{}, s), nil
}

// UnaryInterceptor authorizes unary calls.
func (t *Tunnel) UnaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := t.authorize(ctx)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// StreamInterceptor authorizes streaming calls.
func (t *Tunnel) StreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := t.authorize(ss.Context())
	if err != nil {
		return err
	}
	return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }

func sessionOf(ctx context.Context) *Session { return ctx.Value(sessionKey{}).(*Session) }

// Ready streams start-up progress until the server answers.
func (t *Tunnel) Ready(_ *tunnelpb.ReadyRequest, stream grpc.ServerStreamingServer[tunnelpb.ReadyResponse]) error {
	s := sessionOf(stream.Context())
	last := ""
	for {
		state, progress, err, changed := s.sup.Watch()
		switch state {
		case StateReady:
			return stream.Send(&tunnelpb.ReadyResponse{Progress: progress, Ready: true})
		case StateFailed:
			return status.Errorf(codes.Unavailable, "the remote Bazel server cannot start: %v", err)
		case StateStopped:
			return status.Error(codes.Unavailable, "the session was stopped")
		}
		if progress != last {
			if err := stream.Send(&tunnelpb.ReadyResponse{Progress: progress}); err != nil {
				return err
			}
			last = progress
		}
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-changed:
		}
	}
}

// Run forwards one command to the session's server with the server's
// cookies, and reports the command's outputs when asked.
func (t *Tunnel) Run(req *tunnelpb.RunRequest, stream grpc.ServerStreamingServer[tunnelpb.RunResponse]) error {
	ctx := stream.Context()
	s := sessionOf(ctx)
	in := req.GetRequest()
	if in == nil || len(in.GetArg()) == 0 || len(in.GetArg()) > maxArgs {
		return status.Error(codes.InvalidArgument, "a run request needs a command")
	}
	client, info, err := s.sup.Client(ctx)
	if err != nil {
		return status.Errorf(codes.Unavailable, "remote Bazel server: %v", err)
	}
	up := proto.Clone(in).(*commandserverpb.RunRequest)
	up.Cookie = info.RequestCookie
	if up.ClientDescription == "" {
		up.ClientDescription = "nimbus proxy"
	}
	var bepRel string
	if cmd := string(up.Arg[0]); req.GetReportOutputs() && slices.Contains(outputCommands, cmd) {
		var bepDev string
		bepDev, bepRel = s.newBEPPath()
		up.Arg = slices.Insert(up.Arg, 1, []byte("--build_event_json_file="+bepDev))
	}
	defer s.touch()
	upstream, err := client.Run(ctx, up)
	if err != nil {
		return status.Errorf(codes.Unavailable, "remote Bazel server: %v", err)
	}
	commandID := ""
	for {
		resp, err := upstream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				// The proxy went away mid-command: the command must not run on.
				if commandID != "" {
					cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
					client.Cancel(cctx, &commandserverpb.CancelRequest{Cookie: info.RequestCookie, CommandId: commandID})
					cancel()
				}
				return status.FromContextError(ctx.Err()).Err()
			}
			return status.Errorf(codes.Unavailable, "remote Bazel server: %v", err)
		}
		if id := resp.GetCommandId(); id != "" {
			commandID = id
		}
		if resp.GetCookie() != info.ResponseCookie {
			return status.Error(codes.Internal, "remote Bazel server answered with a wrong cookie")
		}
		resp.Cookie = ""
		out := &tunnelpb.RunResponse{Response: resp}
		if resp.GetFinished() && bepRel != "" {
			paths, err := s.readOutputs(bepRel)
			if err != nil {
				t.log.Warn("reading build events", "session_id", s.spec.ID, "err", err)
			}
			out.Outputs = &tunnelpb.Outputs{Paths: paths, WorkspaceLinks: s.lister.WorkspaceLinks(s.rel(s.dirs.Workspace))}
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}

// Cancel forwards a cancellation by the server's command id.
func (t *Tunnel) Cancel(ctx context.Context, req *commandserverpb.CancelRequest) (*commandserverpb.CancelResponse, error) {
	s := sessionOf(ctx)
	if state, _, _ := s.sup.Status(); state != StateReady {
		return &commandserverpb.CancelResponse{}, nil
	}
	client, info, err := s.sup.Client(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "remote Bazel server: %v", err)
	}
	if _, err := client.Cancel(ctx, &commandserverpb.CancelRequest{Cookie: info.RequestCookie, CommandId: req.GetCommandId()}); err != nil {
		return nil, status.Errorf(codes.Unavailable, "cancel: %v", err)
	}
	return &commandserverpb.CancelResponse{}, nil
}

// Sync updates the session's copy of the workspace.
func (t *Tunnel) Sync(stream grpc.BidiStreamingServer[tunnelpb.SyncRequest, tunnelpb.SyncResponse]) error {
	s := sessionOf(stream.Context())
	if err := s.tree.Serve(stream); err != nil {
		if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
			return err
		}
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

// Stat describes outputs.
func (t *Tunnel) Stat(ctx context.Context, req *tunnelpb.StatRequest) (*tunnelpb.StatResponse, error) {
	s := sessionOf(ctx)
	if len(req.GetPaths()) > maxArgs {
		return nil, status.Error(codes.InvalidArgument, "too many paths")
	}
	entries, err := s.lister.Stat(ctx, req.GetPaths())
	if err != nil {
		return nil, status.Error(codes.ResourceExhausted, err.Error())
	}
	return &tunnelpb.StatResponse{Entries: entries}, nil
}

// Read streams regular files.
func (t *Tunnel) Read(req *tunnelpb.ReadRequest, stream grpc.ServerStreamingServer[tunnelpb.ReadResponse]) error {
	s := sessionOf(stream.Context())
	if len(req.GetPaths()) > maxArgs {
		return status.Error(codes.InvalidArgument, "too many paths")
	}
	buf := make([]byte, 1<<20)
	for _, p := range req.GetPaths() {
		f, err := s.lister.Open(p)
		if err != nil {
			return status.Errorf(codes.NotFound, "%s: %v", p, err)
		}
		err = func() error {
			defer f.Close()
			for {
				n, err := io.ReadFull(f, buf)
				last := err != nil
				if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					return status.Errorf(codes.Internal, "read %s: %v", p, err)
				}
				if serr := stream.Send(&tunnelpb.ReadResponse{Path: p, Data: buf[:n], Last: last}); serr != nil {
					return serr
				}
				if last {
					return nil
				}
			}
		}()
		if err != nil {
			return err
		}
	}
	return nil
}
