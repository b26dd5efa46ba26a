package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/httperror"
)

// Error codes of the OCI Distribution spec (and distribution's UNAVAILABLE
// and RANGE_INVALID), as clients read them from {"errors":[{"code"…}]}.
const (
	codeBlobUnknown         = "BLOB_UNKNOWN"
	codeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	codeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestUnknown     = "MANIFEST_UNKNOWN"
	codeNameInvalid         = "NAME_INVALID"
	codeNameUnknown         = "NAME_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeUnauthorized        = "UNAUTHORIZED"
	codeDenied              = "DENIED"
	codeUnsupported         = "UNSUPPORTED"
	codeTooManyRequests     = "TOOMANYREQUESTS"
	codeUnavailable         = "UNAVAILABLE"
	codeRangeInvalid        = "RANGE_INVALID"
)

// Sentinel errors of the parsers and the pull-through path. The edge maps
// them to answers once (classify).
var (
	errBadDigest         = errors.New("invalid digest")
	errUnsupportedDigest = errors.New("unsupported digest algorithm")
	errBadTag            = errors.New("invalid tag")
	errBadName           = errors.New("invalid repository name")
	errBadRange          = errors.New("invalid range")
	errBadScope          = errors.New("invalid scope")
	errBadManifest       = errors.New("invalid manifest")
	// errNameUnknown: the repository is not one the caller may reach
	// (no such upstream, not allowed by the org's policy, or another
	// org's). Every such case answers the same.
	errNameUnknown     = errors.New("repository name not known to registry")
	errManifestUnknown = errors.New("manifest unknown")
	errBlobUnknown     = errors.New("blob unknown")
	errUploadUnknown   = errors.New("blob upload unknown")
	// errNoRoute: no endpoint of the API at that path.
	errNoRoute = errors.New("no such registry endpoint")
	// errUpstream: the upstream failed (unreachable, 5xx, a broken or
	// tampered stream); nothing it sent was kept.
	errUpstream = errors.New("upstream registry failed")
	// errUpstreamDenied: the upstream refused our credentials.
	errUpstreamDenied = errors.New("upstream registry refused access")
	// errUpstreamThrottled: the upstream answered 429.
	errUpstreamThrottled = errors.New("upstream registry is throttling")
	// errSignature: the org's policy requires a signature the manifest
	// does not carry.
	errSignature = errors.New("signature verification failed")
)

// ociError returns an answer the handler has decided.
func ociError(status int, code, format string, args ...any) error {
	return &httperror.Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// classify maps the package's and the store's sentinel errors to answers.
func classify(err error) (httperror.Error, bool) {
	e := func(status int, code string) (httperror.Error, bool) {
		return httperror.Error{Status: status, Code: code, Message: err.Error()}, true
	}
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return e(http.StatusUnauthorized, codeUnauthorized)
	case errors.Is(err, auth.ErrForbidden):
		return e(http.StatusForbidden, codeDenied)
	case errors.Is(err, errBadDigest), errors.Is(err, errUnsupportedDigest):
		return e(http.StatusBadRequest, codeDigestInvalid)
	case errors.Is(err, errBadTag), errors.Is(err, errBadManifest):
		return e(http.StatusBadRequest, codeManifestInvalid)
	case errors.Is(err, errBadScope):
		return e(http.StatusBadRequest, codeUnsupported)
	case errors.Is(err, errBadName):
		return e(http.StatusBadRequest, codeNameInvalid)
	case errors.Is(err, errBadRange):
		return e(http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid)
	case errors.Is(err, errNameUnknown):
		return e(http.StatusNotFound, codeNameUnknown)
	case errors.Is(err, errManifestUnknown):
		return e(http.StatusNotFound, codeManifestUnknown)
	case errors.Is(err, errBlobUnknown), errors.Is(err, blobstore.ErrNotFound):
		return e(http.StatusNotFound, codeBlobUnknown)
	case errors.Is(err, errUploadBroken):
		return e(http.StatusBadRequest, codeBlobUploadInvalid)
	case errors.Is(err, errUploadUnknown):
		return e(http.StatusNotFound, codeBlobUploadUnknown)
	case errors.Is(err, errNoRoute):
		return e(http.StatusNotFound, codeUnsupported)
	case errors.Is(err, errSignature):
		return e(http.StatusForbidden, codeDenied)
	case errors.Is(err, errUpstreamThrottled):
		return e(http.StatusTooManyRequests, codeTooManyRequests)
	case errors.Is(err, errUpstreamDenied):
		// As Docker Hub answers: the repository does not exist, or the
		// credentials do not reach it; which one, the upstream knows.
		return e(http.StatusNotFound, codeNameUnknown)
	case errors.Is(err, errUpstream):
		return e(http.StatusBadGateway, codeUnavailable)
	case errors.Is(err, blobstore.ErrQuotaExceeded):
		return e(http.StatusInsufficientStorage, codeDenied)
	case errors.Is(err, blobstore.ErrTooLarge):
		return e(http.StatusRequestEntityTooLarge, codeSizeInvalid)
	case errors.Is(err, blobstore.ErrInvalid):
		return e(http.StatusBadRequest, codeBlobUploadInvalid)
	case errors.Is(err, blobstore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return e(http.StatusServiceUnavailable, codeUnavailable)
	}
	return httperror.Error{}, false
}
