package dashboard_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

// screenshotDir is where the browser tests leave their screenshots:
// $NIMBUS_ARTIFACTS/dashboard in CI, else testdata/screenshots (ignored
// by git).
func screenshotDir(t *testing.T) string {
	if a := os.Getenv("NIMBUS_ARTIFACTS"); a != "" {
		return filepath.Join(a, "dashboard")
	}
	d, err := filepath.Abs("testdata/screenshots")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// needBrowser finds Chromium, Node and playwright-core, or skips (fails
// with CI=true).
func needBrowser(t *testing.T) (chromium, node string) {
	t.Helper()
	chromium = testenv.NeedCommand(t, "chromium", "apt-get install chromium (scripts/test-deps.sh does)")
	node = testenv.NeedCommand(t, "node", "apt-get install nodejs")
	if _, err := os.Stat("testdata/browser/node_modules/playwright-core/package.json"); err != nil {
		testenv.Missing(t, "playwright-core is not installed (npm ci --prefix internal/dashboard/testdata/browser; scripts/test-deps.sh does)")
	}
	return chromium, node
}

// agentPlayer plays a job's agent on the browser script's cue (the
// control endpoint), so the script can watch each step arrive live.
type agentPlayer struct {
	t     *testing.T
	e     *env
	job   string
	agent *apiclient.Client
	fence int64
	seq   int64
}

func (p *agentPlayer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var err error
	switch r.URL.Path {
	case "/lease":
		err = p.lease(ctx)
	case "/log":
		err = p.log(ctx, r.URL.Query().Get("part"))
	case "/complete":
		code := 0
		_, err = p.agent.CompleteJob(ctx, p.job, apiv1.Complete{Fence: p.fence, State: "succeeded", ExitCode: &code})
	case "/stale":
		// Age the browser's sign-in past the step-up window.
		h := sha256.Sum256([]byte(r.URL.Query().Get("cookie")))
		s, lerr := p.e.h.CP.Store.WebSessions().ByHash(ctx, h[:])
		if err = lerr; err == nil {
			err = p.e.h.CP.Store.WebSessions().SetAuth(ctx, s.ID, time.Now().Add(-time.Hour))
		}
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		p.t.Errorf("control %s: %v", r.URL.Path, err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func (p *agentPlayer) lease(ctx context.Context) error {
	jt, err := p.e.h.Owner().CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: []string{"linux"}})
	if err != nil {
		return err
	}
	en, err := p.e.h.Client(jt.Token).Enroll(ctx, apiv1.Enroll{Name: "browser-agent", MaxJobs: 1})
	if err != nil {
		return err
	}
	p.agent = p.e.h.Client(en.Credential)
	if _, err := p.agent.Register(ctx, apiv1.Register{Labels: []string{"linux"}, MaxJobs: 1, Version: "test"}); err != nil {
		return err
	}
	l, err := p.agent.Lease(ctx, 5)
	if err != nil {
		return err
	}
	if l == nil || l.Job.ID != p.job {
		return fmt.Errorf("leased %+v, want job %s", l, p.job)
	}
	p.fence = l.Fence
	_, err = p.agent.StartJob(ctx, p.job, p.fence)
	return err
}

var logParts = map[string]string{
	"1": "::group::Install dependencies\nfetching left-pad\nfetching is-even\n::endgroup::\n" +
		"\x1b[1mcompiling nimbus\x1b[0m (the first line after the step)\n",
	"2": "running tests\n\x1b[32mPASS\x1b[0m internal/jobs\n\x1b[31mFAIL\x1b[0m nothing, this is \x1b[38;5;208mfine\x1b[0m\n" +
		"found the needle-in-the-log here\nprogress 10%\rprogress 100%\n",
}

func (p *agentPlayer) log(ctx context.Context, part string) error {
	text, ok := logParts[part]
	if !ok {
		return fmt.Errorf("no log part %q", part)
	}
	// Two chunks, cut inside a line (and, for part 2, inside "é").
	data := []byte(text)
	mid := len(data) / 2
	for _, c := range [][]byte{data[:mid], data[mid:]} {
		if _, err := p.agent.AppendLogs(ctx, p.job, apiv1.Logs{Fence: p.fence, Chunks: []apiv1.LogChunk{{Seq: p.seq, Data: c}}}); err != nil {
			return err
		}
		p.seq++
	}
	return nil
}

// The dashboard in headless Chromium: sign in through the OpenID
// Provider, a queued job's reason to wait, the job running with its log
// tailing live in the job page and the list (no reload), search in the
// log, a token created after a step-up and revoked, every page (with a
// screenshot each) and sign-out.
func TestBrowser(t *testing.T) {
	chromium, node := needBrowser(t)
	e := newEnv(t)
	ctx := context.Background()
	j, err := e.h.Owner().SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"make", "test"}, Labels: []string{"linux"}})
	if err != nil {
		t.Fatal(err)
	}
	player := &agentPlayer{t: t, e: e, job: j.ID}
	ctl := httptest.NewServer(player)
	defer ctl.Close()
	shots := screenshotDir(t)
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, node, "scenario.mjs")
	cmd.Dir = "testdata/browser"
	cmd.Env = append(os.Environ(), "NIMBUS_URL="+e.h.URL, "CONTROL_URL="+ctl.URL, "JOB_ID="+j.ID, "CHROMIUM="+chromium, "SCREENSHOTS="+shots)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("browser scenario (%v):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("browser scenario: %v", err)
	}
	t.Logf("screenshots in %s", shots)
}
