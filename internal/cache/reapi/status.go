package reapi

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// toStatus maps an error to the gRPC status the client sees. Unexpected
// errors are logged here and answered with a generic message.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codeOf(err)
	if code == codes.Internal {
		log.ErrorContext(ctx, "cache request", "err", err)
		return status.Error(code, "internal error")
	}
	return status.Error(code, err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return codes.Unauthenticated
	case errors.Is(err, auth.ErrForbidden):
		return codes.PermissionDenied
	case errors.Is(err, blobstore.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, blobstore.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, blobstore.ErrQuotaExceeded), errors.Is(err, blobstore.ErrTooLarge):
		return codes.ResourceExhausted
	case errors.Is(err, blobstore.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}
