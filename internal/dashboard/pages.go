package dashboard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/admin"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/httperror"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// pages are the parsed templates (one per page, each with the layout)
// and the embedded assets with their content hashes.
type pages struct {
	byName map[string]*template.Template
	assets map[string]asset
}

type asset struct {
	body  []byte
	hash  string
	ctype string
}

func parsePages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}, assets: map[string]asset{}}
	err := fs.WalkDir(assetFS, "assets", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assetFS.ReadFile(name)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		p.assets[path.Base(name)] = asset{body: b, hash: hex.EncodeToString(h[:6]), ctype: mime.TypeByExtension(path.Ext(name))}
		return nil
	})
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"asset": func(name string) string {
			a, ok := p.assets[name]
			if !ok {
				panic("dashboard: no asset " + name)
			}
			return "/ui/assets/" + name + "?v=" + a.hash
		},
		"ago":      ago,
		"dur":      shortDuration,
		"ts":       func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"bytes":    humanBytes,
		"join":     strings.Join,
		"pct":      func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
		"stateOf":  func(s store.JobState) string { return string(s) },
		"roleName": roleName,
		"short":    func(s string) string { return shortID(s) },
		"inc":      func(n int) int { return n + 1 },
		"dec":      func(n int) int { return n - 1 },
		"add":      func(a, b int) int { return a + b },
		"stepUpView": func(c *call, ret string) map[string]string {
			return map[string]string{"Window": c.StepUpWindow, "Return": ret}
		},
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", base, err)
		}
		p.byName[strings.TrimSuffix(base, ".html")] = t
	}
	return p, nil
}

// view is what every page's template gets.
type view struct {
	Title string
	// Nav names the section the page belongs to (for the menu).
	Nav string
	C   *call
	// Orgs are the session's orgs, for the org switcher.
	Orgs []orgChoice
	Data any
}

type orgChoice struct {
	ID, Name string
	Role     auth.Role
	Current  bool
}

// render writes page name with data, status 200.
func (s *Server) render(w http.ResponseWriter, r *http.Request, c *call, status int, name, title, nav string, data any) error {
	t, ok := s.pages.byName[name]
	if !ok {
		return fmt.Errorf("no page %s", name)
	}
	v := view{Title: title, Nav: nav, C: c, Data: data}
	if c != nil {
		v.Orgs = s.orgChoices(r.Context(), c)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
	return nil
}

func (s *Server) orgChoices(ctx context.Context, c *call) []orgChoice {
	out := make([]orgChoice, 0, len(c.Session.Roles))
	for _, r := range c.Session.Roles {
		name := r.Org
		if o, err := s.Store.Orgs().Get(ctx, r.Org); err == nil {
			name = o.Name
		}
		out = append(out, orgChoice{ID: r.Org, Name: name, Role: r.Role, Current: r.Org == c.Session.Org})
	}
	return out
}

func (s *Server) asset(w http.ResponseWriter, r *http.Request) error {
	a, ok := s.pages.assets[r.PathValue("name")]
	if !ok {
		return notFound("asset")
	}
	w.Header().Set("Content-Type", a.ctype)
	if r.URL.Query().Get("v") == a.hash {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Header().Set("ETag", `"`+a.hash+`"`)
	if r.Header.Get("If-None-Match") == `"`+a.hash+`"` {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Write(a.body)
	return nil
}

// pageError is a failure whose status and message the handler decided.
type pageError struct {
	status int
	title  string
	msg    string
}

func (e *pageError) Error() string { return e.msg }

func notFound(what string) error {
	return &pageError{status: http.StatusNotFound, title: "Not found", msg: "No such " + what + " in this org."}
}

func badRequest(format string, args ...any) error {
	return &pageError{status: http.StatusBadRequest, title: "Bad request", msg: fmt.Sprintf(format, args...)}
}

// classify maps the services' errors to what the person sees.
func classify(err error) *pageError {
	var pe *pageError
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, auth.ErrForbidden):
		return &pageError{status: http.StatusForbidden, title: "Forbidden", msg: strings.TrimPrefix(err.Error(), "forbidden: ")}
	case errors.Is(err, store.ErrNotFound):
		return &pageError{status: http.StatusNotFound, title: "Not found", msg: "Not found in this org."}
	case errors.Is(err, jobs.ErrInvalid):
		return &pageError{status: http.StatusBadRequest, title: "Bad request", msg: err.Error()}
	case errors.Is(err, admin.ErrLastOwner):
		return &pageError{status: http.StatusConflict, title: "Refused", msg: err.Error()}
	case errors.Is(err, store.ErrConflict):
		return &pageError{status: http.StatusConflict, title: "Conflict", msg: "It exists already (or another org has it)."}
	case errors.Is(err, store.ErrFinished):
		return &pageError{status: http.StatusConflict, title: "Conflict", msg: "The job has finished already."}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &pageError{status: http.StatusRequestEntityTooLarge, title: "Too large", msg: "The form is too large."}
	}
	return nil
}

// page turns a handler's error into an error page (or, for a stream
// or a request that is not a page, a status with a short text).
func (s *Server) page(h openHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &httperror.StartWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in dashboard handler", "method", r.Method, "path", r.URL.Path, "panic", v)
				if !sw.Started() {
					s.errorPage(w, r, &pageError{status: http.StatusInternalServerError, title: "Error", msg: "Something went wrong on the server."})
				}
			}
		}()
		err := h(sw, r)
		if err == nil || (errors.Is(err, context.Canceled) && r.Context().Err() != nil) {
			return
		}
		pe := classify(err)
		if pe == nil {
			s.log.Error("dashboard request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			pe = &pageError{status: http.StatusInternalServerError, title: "Error", msg: "Something went wrong on the server."}
		}
		if sw.Started() {
			return
		}
		s.errorPage(w, r, pe)
	})
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, pe *pageError) {
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") || r.Header.Get("X-Requested-With") != "" {
		http.Error(w, pe.msg, pe.status)
		return
	}
	if err := s.render(w, r, nil, pe.status, "error", pe.title, "", pe); err != nil {
		http.Error(w, pe.msg, pe.status)
	}
}

// Formatting helpers of the templates.

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return shortDuration(time.Since(t)) + " ago"
}

func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// roleName is a role as the dashboard shows it.
func roleName(r auth.Role) string { return string(r) }

// shortID is an id without its prefix's random tail: job_01jd…x3k.
func shortID(id string) string {
	if len(id) <= 14 {
		return id
	}
	return id[:8] + "…" + id[len(id)-4:]
}
