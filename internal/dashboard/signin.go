package dashboard

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/sso"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/websession"
)

func (s *Server) provider(name string) sso.Provider {
	for _, p := range s.Providers {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

func (s *Server) redirectURL() string {
	return strings.TrimRight(s.publicURL.Load().(string), "/") + RouteCallback.Path
}

type loginData struct {
	Providers []sso.Provider
	Return    string
	Expired   bool
}

// loginPage offers the ways to sign in.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	return s.render(w, r, nil, http.StatusOK, "login", "Sign in", "",
		loginData{Providers: s.Providers, Return: safeReturn(q.Get("return")), Expired: q.Get("expired") == "1"})
}

// loginWith starts a sign-in at a provider: the state, nonce and PKCE
// verifier go into the sealed sign-in cookie (nothing is stored on the
// server for a browser that is not signed in), the browser to the
// provider.
func (s *Server) loginWith(w http.ResponseWriter, r *http.Request) error {
	p := s.provider(r.PathValue("provider"))
	if p == nil {
		return notFound("sign-in provider")
	}
	l := s.Web.NewLoginState(p.Name(), safeReturn(r.URL.Query().Get("return")), "")
	return s.sendToProvider(w, r, p, l)
}

func (s *Server) sendToProvider(w http.ResponseWriter, r *http.Request, p sso.Provider, l websession.LoginState) error {
	u, err := p.AuthURL(r.Context(), s.redirectURL(), sso.Attempt{State: l.State, Nonce: l.Nonce, Verifier: l.Verifier,
		StepUp: l.StepUp != "", Started: l.Started})
	if err != nil {
		s.log.Warn("sign-in provider unreachable", "provider", p.Name(), "err", err)
		return &pageError{status: http.StatusBadGateway, title: "Sign-in unavailable", msg: p.Label() + " cannot be reached now; try again shortly."}
	}
	s.Web.SetLoginState(w, l)
	http.Redirect(w, r, u, http.StatusSeeOther)
	return nil
}

// callback finishes a sign-in or a step-up.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) error {
	// The code in the URL must not leak through a Referer.
	w.Header().Set("Referrer-Policy", "no-referrer")
	q := r.URL.Query()
	l, err := s.Web.TakeLoginState(w, r, q.Get("state"))
	if err != nil {
		return &pageError{status: http.StatusBadRequest, title: "Sign-in failed", msg: err.Error()}
	}
	p := s.provider(l.Provider)
	if p == nil {
		return &pageError{status: http.StatusBadRequest, title: "Sign-in failed", msg: "That sign-in provider is no longer configured."}
	}
	if e := q.Get("error"); e != "" {
		msg := p.Label() + " refused the sign-in (" + clip(e, 64) + ")"
		if d := q.Get("error_description"); d != "" {
			msg += ": " + clip(d, 200)
		}
		return &pageError{status: http.StatusUnauthorized, title: "Sign-in refused", msg: msg}
	}
	code := q.Get("code")
	if code == "" || len(code) > 2048 {
		return &pageError{status: http.StatusBadRequest, title: "Sign-in failed", msg: "The provider sent no code."}
	}
	id, err := p.Finish(r.Context(), s.redirectURL(), code, sso.Attempt{State: l.State, Nonce: l.Nonce, Verifier: l.Verifier,
		StepUp: l.StepUp != "", Started: l.Started})
	if errors.Is(err, sso.ErrRefused) {
		s.audit.Record(r.Context(), store.AuditEntry{Actor: "system", Action: "signin.refused", Target: p.Name(),
			Detail: map[string]string{"reason": clip(err.Error(), 300)}})
		return &pageError{status: http.StatusUnauthorized, title: "Sign-in refused", msg: err.Error()}
	}
	if err != nil {
		s.log.Warn("sign-in failed", "provider", p.Name(), "err", err)
		return &pageError{status: http.StatusBadGateway, title: "Sign-in failed", msg: p.Label() + " could not be reached to finish the sign-in; try again."}
	}
	if l.StepUp != "" {
		return s.finishStepUp(w, r, l, id)
	}
	return s.finishSignIn(w, r, l, id)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// finishSignIn maps the identity to roles and starts a session; someone
// the rules give no role is refused (and audited).
func (s *Server) finishSignIn(w http.ResponseWriter, r *http.Request, l websession.LoginState, id sso.Identity) error {
	ctx := r.Context()
	roles, err := s.resolveRoles(ctx, sso.Roles(s.Rules, id))
	if err != nil {
		return err
	}
	who := websession.Identity{Provider: id.Provider, Subject: id.Subject, Email: id.Email, Name: id.Name}
	actor := "user:" + websession.UserID(id.Provider, id.Subject)
	if len(roles) == 0 {
		s.audit.Record(ctx, store.AuditEntry{Actor: actor, Action: "signin.refused", Target: id.Provider,
			Detail: map[string]string{"email": id.Email, "reason": "no role in any org"}})
		return &pageError{status: http.StatusForbidden, title: "No access",
			msg: "You signed in as " + describeIdentity(id) + ", but no rule of this server gives that account a role in an org. Ask an administrator."}
	}
	// A browser signing in again gets a new session: the old one ends
	// (no fixation of a session id across sign-ins).
	if old, err := s.Web.Load(ctx, r); err == nil {
		s.Web.End(ctx, w, old)
	}
	sess, err := s.Web.Start(ctx, w, who, roles, roles[0].Org, id.AuthAt)
	if err != nil {
		return err
	}
	for _, or := range roles {
		s.audit.Record(ctx, store.AuditEntry{OrgID: or.Org, Actor: actor, Action: "user.signed_in", Target: sess.ID,
			Detail: map[string]string{"provider": id.Provider, "email": id.Email, "role": string(or.Role)}})
	}
	http.Redirect(w, r, safeReturn(l.Return), http.StatusSeeOther)
	return nil
}

func describeIdentity(id sso.Identity) string {
	switch {
	case id.Email != "":
		return id.Email
	case id.GitHubLogin != "":
		return "@" + id.GitHubLogin
	}
	return id.Name
}

// resolveRoles turns roles by org name into roles by org id, strongest
// first (then by name); rules naming an org that does not exist are
// skipped.
func (s *Server) resolveRoles(ctx context.Context, byName map[string]auth.Role) ([]websession.OrgRole, error) {
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []websession.OrgRole
	for _, n := range names {
		o, err := s.Store.Orgs().GetByName(ctx, n)
		if errors.Is(err, store.ErrNotFound) {
			s.log.Warn("a sign-in rule names an org that does not exist", "org", n)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, websession.OrgRole{Org: o.ID, Role: byName[n]})
	}
	sort.SliceStable(out, func(i, j int) bool {
		return slices.Index(auth.Roles, out[i].Role) > slices.Index(auth.Roles, out[j].Role)
	})
	return out, nil
}

// finishStepUp records the new authentication on the session that asked
// for it, which must be the same person at the same provider.
func (s *Server) finishStepUp(w http.ResponseWriter, r *http.Request, l websession.LoginState, id sso.Identity) error {
	ctx := r.Context()
	sess, err := s.Web.Load(ctx, r)
	if err != nil || sess.ID != l.StepUp {
		return &pageError{status: http.StatusUnauthorized, title: "Step-up failed", msg: "The session that asked to confirm your identity has ended: sign in again."}
	}
	if sess.Provider != id.Provider || sess.Subject != id.Subject {
		s.audit.Record(ctx, store.AuditEntry{OrgID: sess.Org, Actor: "user:" + sess.UserID, Action: "signin.step_up_refused", Target: sess.ID,
			Detail: map[string]string{"reason": "another account authenticated", "account": describeIdentity(id)}})
		return &pageError{status: http.StatusForbidden, title: "Step-up refused", msg: "You confirmed as another account than the one signed in."}
	}
	if err := s.Web.SteppedUp(ctx, sess, id.AuthAt); err != nil {
		return err
	}
	s.audit.Record(ctx, store.AuditEntry{OrgID: sess.Org, Actor: "user:" + sess.UserID, Action: "user.stepped_up", Target: sess.ID,
		Detail: map[string]string{"provider": id.Provider}})
	http.Redirect(w, r, safeReturn(l.Return), http.StatusSeeOther)
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := s.Web.End(r.Context(), w, c.Session); err != nil {
		return err
	}
	s.audit.Record(r.Context(), store.AuditEntry{OrgID: c.Session.Org, Actor: audit.Actor(c.Principal), Action: "user.signed_out", Target: c.Session.ID})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}

type stepUpData struct {
	Provider sso.Provider
	Return   string
	Possible bool
	Window   string
}

// askStepUp answers a route that needs a recent authentication: the page
// offers to confirm one's identity and come back.
func (s *Server) askStepUp(w http.ResponseWriter, r *http.Request, c *call) error {
	back := "/ui/jobs"
	if rest, ok := strings.CutPrefix(r.URL.Path, "/ui/"); ok {
		back = "/ui/" + strings.SplitN(rest, "/", 2)[0]
	}
	p := s.provider(c.Session.Provider)
	return s.render(w, r, c, http.StatusForbidden, "stepup", "Confirm it's you", "",
		stepUpData{Provider: p, Return: safeReturn(back), Possible: p != nil && p.StepUp(), Window: shortDuration(s.Web.Config().StepUp)})
}

// stepUp sends the person back to their provider to authenticate again.
func (s *Server) stepUp(w http.ResponseWriter, r *http.Request, c *call) error {
	p := s.provider(c.Session.Provider)
	if p == nil || !p.StepUp() {
		return &pageError{status: http.StatusForbidden, title: "Step-up unavailable",
			msg: "Your sign-in provider cannot confirm your identity again on request (GitHub does not re-ask for a password): use an OpenID Connect provider for these actions, or the CLI."}
	}
	l := s.Web.NewLoginState(p.Name(), safeReturn(r.URL.Query().Get("return")), c.Session.ID)
	return s.sendToProvider(w, r, p, l)
}

func (s *Server) switchOrg(w http.ResponseWriter, r *http.Request, c *call) error {
	org := r.PostFormValue("org")
	if c.Session.Role(org) == "" {
		return notFound("org")
	}
	if err := s.Web.SetOrg(r.Context(), c.Session, org); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/jobs", http.StatusSeeOther)
	return nil
}
