package api

import (
	"net/http"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache/jobcred"
	"github.com/nimbus-build/nimbus/internal/store"
)

func cacheTrustJSON(t store.CacheTrust) apiv1.CacheTrust {
	return apiv1.CacheTrust{UntrustedRefs: t.UntrustedRefs, ACWriteRefs: t.ACWriteRefs, UpdatedBy: t.UpdatedBy, UpdatedAt: t.UpdatedAt}
}

func (s *Server) getCacheTrust(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if s.CacheTrust == nil {
		return notFound("build cache trust (off on this server)")
	}
	t, err := s.CacheTrust.Get(r.Context(), p.Org)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cacheTrustJSON(t))
	return nil
}

func (s *Server) setCacheTrust(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if s.CacheTrust == nil {
		return notFound("build cache trust (off on this server)")
	}
	var req apiv1.CacheTrust
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	if req.UntrustedRefs == nil || req.ACWriteRefs == nil {
		return badRequest("untrusted_refs and ac_write_refs: both required (lists of ref patterns, possibly empty)")
	}
	for _, l := range []struct {
		field string
		refs  []string
	}{{"untrusted_refs", req.UntrustedRefs}, {"ac_write_refs", req.ACWriteRefs}} {
		if err := jobcred.ValidatePatterns(l.field, l.refs); err != nil {
			return badRequest("%v", err)
		}
	}
	t, err := s.CacheTrust.Set(r.Context(), p, req.UntrustedRefs, req.ACWriteRefs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cacheTrustJSON(t))
	return nil
}
