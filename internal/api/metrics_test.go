package api_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
)

// /metrics shows installation-wide counters (issue 16 item 6): over
// HTTPS it is off the API's listener unless a token guards it, a token is
// asked for wherever it is set, and --metrics-listen moves it to a
// listener of its own.
func TestMetricsAccess(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "metrics.token")
	const token = "scrape-0123456789abcdef"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withToken := func(c *app.ServerConfig) { c.MetricsTokenFile = tokenFile }
	tls := func(c *app.ServerConfig) { c.TLSAuto = true }
	ownListener := func(c *app.ServerConfig) { c.MetricsListen = "127.0.0.1:0" }
	type probe struct {
		token string
		// status of GET /metrics on the API's listener and (when set up)
		// on the metrics listener.
		public, own int
	}
	for _, tc := range []struct {
		name   string
		opts   []apptest.Option
		probes []probe
	}{
		{"plain HTTP", nil, []probe{{"", 200, 0}}},
		{"plain HTTP, token", []apptest.Option{withToken}, []probe{{"", 401, 0}, {"wrong-token-0123456789", 401, 0}, {token, 200, 0}}},
		{"HTTPS", []apptest.Option{tls}, []probe{{"", 404, 0}}},
		{"HTTPS, token", []apptest.Option{tls, withToken}, []probe{{"", 401, 0}, {token, 200, 0}}},
		{"own listener", []apptest.Option{ownListener}, []probe{{"", 404, 200}}},
		{"HTTPS, own listener, token", []apptest.Option{tls, ownListener, withToken}, []probe{{"", 404, 401}, {token, 404, 200}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := apptest.Start(t, "sqlite", tc.opts...)
			get := func(c *apiclient.Client) int {
				resp, err := c.Raw(context.Background(), "GET", "/metrics", nil)
				var e *apiclient.Error
				switch {
				case errors.As(err, &e):
					if e.Status == 404 && !strings.Contains(e.Message, "--metrics-listen") {
						t.Errorf("404 without saying where metrics are: %q", e.Message)
					}
					return e.Status
				case err != nil:
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b := readAll(resp)
				if !strings.Contains(b, "nimbus_http_shed_total") {
					t.Errorf("metrics without the edge limits' counters")
				}
				return resp.StatusCode
			}
			for _, p := range tc.probes {
				if got := get(h.Client(p.token)); got != p.public {
					t.Errorf("token %q on the API's listener: %d, want %d", p.token, got, p.public)
				}
				if p.own != 0 {
					url := strings.TrimSuffix(h.CP.MetricsURL(), "/metrics")
					c := apiclient.New(url, p.token)
					c.HTTP = http.DefaultClient
					if got := get(c); got != p.own {
						t.Errorf("token %q on the metrics listener: %d, want %d", p.token, got, p.own)
					}
				}
			}
		})
	}
}

// A join token without labels would enroll an agent that can run only
// jobs asking for none: refused with a clear 400 (issue 16 item 6).
func TestJoinTokenNeedsLabels(t *testing.T) {
	h := apptest.Start(t, "sqlite")
	for _, labels := range [][]string{nil, {}} {
		_, err := h.Owner().CreateJoinToken(context.Background(), apiv1.CreateJoinToken{Labels: labels})
		var e *apiclient.Error
		if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Message, "labels: at least one") {
			t.Errorf("join token with labels %v: %v, want 400 naming labels", labels, err)
		}
	}
	if _, err := h.Owner().CreateJoinToken(context.Background(), apiv1.CreateJoinToken{Labels: []string{"linux"}}); err != nil {
		t.Errorf("with a label: %v", err)
	}
}
