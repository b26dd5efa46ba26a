package access

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// Methods maps the full name of every gRPC method the cache serves
// ("/package.Service/Method") to the action it needs.
type Methods map[string]Action

// ServerOptions are the gRPC interceptors of the edge: every call is
// admitted for its method's action before its handler runs, and a method
// missing from methods is refused, so a service registered without an
// entry serves nothing. toStatus turns errors other than the edge's
// refusals (the token store failing, say) into the status the client sees.
func (g *Gate) ServerOptions(methods Methods, toStatus func(context.Context, error) error) []grpc.ServerOption {
	admit := func(ctx context.Context, method string) (context.Context, error) {
		a, ok := methods[method]
		if !ok {
			return ctx, status.Errorf(codes.PermissionDenied, "%s has no entry in the cache's route table", method)
		}
		if !a.Decided() {
			return ctx, nil
		}
		ctx, err := g.Admit(ctx, MetadataToken(ctx), a)
		switch {
		case err == nil:
			return ctx, nil
		case errors.Is(err, auth.ErrUnauthenticated):
			return ctx, status.Error(codes.Unauthenticated, err.Error())
		case errors.Is(err, auth.ErrForbidden):
			return ctx, status.Error(codes.PermissionDenied, err.Error())
		}
		return ctx, toStatus(ctx, fmt.Errorf("admit %s: %w", method, err))
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := admit(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := admit(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, admittedStream{ServerStream: ss, ctx: ctx})
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}

// admittedStream is a stream whose context carries the Caller.
type admittedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s admittedStream) Context() context.Context { return s.ctx }
