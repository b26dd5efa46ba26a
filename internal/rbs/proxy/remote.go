package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
)

// remote is a provisioned session: its endpoint and a tunnel connection.
type remote struct {
	ep     rbs.Endpoint
	conn   *grpc.ClientConn
	tunnel tunnelpb.TunnelClient

	readyMu sync.Mutex
	ready   bool
}

// ctx adds the session's metadata to ctx for tunnel calls.
func (r *remote) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, rbs.SessionMetadataKey, r.ep.SessionID)
}

func dial(ep rbs.Endpoint) (*remote, error) {
	if ep.TLS == nil {
		return nil, errors.New("the endpoint has no TLS configuration")
	}
	conn, err := grpc.NewClient("passthrough:///"+ep.Address,
		grpc.WithTransportCredentials(credentials.NewTLS(ep.TLS)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(64<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("dial agent %s: %w", ep.Address, err)
	}
	return &remote{ep: ep, conn: conn, tunnel: tunnelpb.NewTunnelClient(conn)}, nil
}

// waitReady streams the session's start-up progress to out until its
// server answers.
func (r *remote) waitReady(ctx context.Context, out io.Writer) error {
	start := time.Now()
	stream, err := r.tunnel.Ready(r.ctx(ctx), &tunnelpb.ReadyRequest{})
	if err != nil {
		return err
	}
	printed := false
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("the agent ended start-up without an answer")
		}
		if err != nil {
			return err
		}
		if msg.GetReady() {
			if printed {
				fmt.Fprintf(out, "nimbus: remote Bazel server ready after %.1fs\n", time.Since(start).Seconds())
			}
			return nil
		}
		if p := msg.GetProgress(); p != "" {
			fmt.Fprintf(out, "nimbus: %s…\n", p)
			printed = true
		}
	}
}
