package access

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"

	"google.golang.org/grpc/metadata"
)

// BearerToken extracts the token from an Authorization header value:
// "Bearer <token>", or "Basic base64(user:token)" with the token as the
// password (Bazel's HTTP cache puts credentials in the URL).
func BearerToken(header string) string {
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok {
		return ""
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return ""
		}
		_, pass, ok := strings.Cut(string(b), ":")
		if !ok {
			return ""
		}
		return pass
	}
	return ""
}

// RequestToken returns the token of an HTTP request.
func RequestToken(r *http.Request) string { return BearerToken(r.Header.Get("Authorization")) }

// MetadataToken returns the token of a gRPC call: the first
// "authorization" metadata value that holds one.
func MetadataToken(ctx context.Context) string {
	// Only the one key: FromIncomingContext would copy all the metadata.
	for _, v := range metadata.ValueFromIncomingContext(ctx, "authorization") {
		if t := BearerToken(strings.TrimSpace(v)); t != "" {
			return t
		}
	}
	return ""
}
