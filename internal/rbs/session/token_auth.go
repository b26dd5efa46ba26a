package session

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// TokenAuth is a minimal authentication middleware for a LocalBroker
// without a control plane (tests, benchmarks, single-process setups):
// each bearer token maps to a principal. The control plane uses its own
// token store instead.
func TokenAuth(tokens map[string]auth.Principal, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if ok {
			for tok, p := range tokens {
				if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1 {
					next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
