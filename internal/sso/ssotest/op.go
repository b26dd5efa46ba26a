// Package ssotest runs a real OpenID Provider for tests: the example
// server of github.com/zitadel/oidc (a certified OP library), as its own
// process on a free loopback port, with users the test chooses.
// scripts/test-deps.sh installs it (Install).
package ssotest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/testenv"
)

// Version is the zitadel/oidc release whose example OP the tests run.
const Version = "v3.52.0"

// Install is how to install the OP.
const Install = "GOBIN=$(go env GOPATH)/bin/zitadel-oidc-" + Version + " go install github.com/zitadel/oidc/v3/example/server@" + Version +
	" (scripts/test-deps.sh does), or set NIMBUS_TEST_OIDC_OP to its path"

// The OP's registered confidential client (storage.WebClient in the
// example server).
const (
	ClientID     = "web"
	ClientSecret = "secret"
)

// User is an account of the OP.
type User struct {
	ID            string
	Username      string
	Password      string
	Email         string
	EmailVerified bool
	FirstName     string
	LastName      string
}

// OP is a running OpenID Provider.
type OP struct {
	// Issuer is its issuer URL (http://localhost:PORT/).
	Issuer string
	cmd    *exec.Cmd
	done   chan struct{}
	logf   string
	port   string
}

func binary(t testing.TB) string {
	if p := os.Getenv("NIMBUS_TEST_OIDC_OP"); p != "" {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "zitadel-oidc-"+Version, "server")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testenv.Missing(t, "the example OpenID Provider is not installed (%s)", Install)
	return ""
}

// Start runs an OP that accepts redirectURIs for its client and knows
// users; it is stopped when the test ends.
func Start(t testing.TB, redirectURIs []string, users []User) *OP {
	t.Helper()
	op := Reserve(t)
	op.Run(t, redirectURIs, users)
	return op
}

// Reserve chooses the OP's port (and so its Issuer) without starting it,
// for a relying party that must be configured with the issuer before its
// own address (the OP's redirect URI) is known. Run starts it.
func Reserve(t testing.TB) *OP {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return &OP{Issuer: "http://localhost:" + port + "/", port: port}
}

// Run starts a reserved OP that accepts redirectURIs for its client and
// knows users; it is stopped when the test ends.
func (op *OP) Run(t testing.TB, redirectURIs []string, users []User) {
	t.Helper()
	bin := binary(t)
	dir := t.TempDir()
	doc := map[string]any{}
	for _, u := range users {
		doc[u.ID] = map[string]any{"ID": u.ID, "Username": u.Username, "Password": u.Password, "FirstName": u.FirstName,
			"LastName": u.LastName, "Email": u.Email, "EmailVerified": u.EmailVerified, "PreferredLanguage": "en"}
	}
	b, _ := json.Marshal(doc)
	usersFile := filepath.Join(dir, "users.json")
	if err := os.WriteFile(usersFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	op.logf = filepath.Join(dir, "op.log")
	if err := op.start(bin, op.port, usersFile, redirectURIs); err != nil {
		t.Fatalf("start the OpenID Provider: %v", err)
	}
	t.Cleanup(func() {
		op.cmd.Process.Kill()
		<-op.done
		if t.Failed() {
			b, _ := os.ReadFile(op.logf)
			t.Logf("OpenID Provider log (tail):\n%s", tail(b, 3000))
		}
	})
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, nil
}

func (op *OP) start(bin, port, usersFile string, redirectURIs []string) error {
	log, err := os.OpenFile(op.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+port, "USERS_FILE="+usersFile, "REDIRECT_URI="+strings.Join(redirectURIs, ","))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	op.cmd, op.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(op.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(op.Issuer + ".well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-op.done:
			b, _ := os.ReadFile(op.logf)
			return fmt.Errorf("the OP exited: %s", tail(b, 2000))
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-op.done
			return errors.New("the OP did not answer its discovery document")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var hiddenID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// SubmitLogin fills in the OP's login form, which page (the body of its
// login page, reached at pageURL) shows, as a browser would, and returns
// the answer the browser ends at with client (which should follow
// redirects and keep cookies).
func SubmitLogin(client *http.Client, pageURL, page, username, password string) (*http.Response, error) {
	m := hiddenID.FindStringSubmatch(page)
	if m == nil {
		return nil, fmt.Errorf("no login form at %s: %.300s", pageURL, page)
	}
	u, err := url.Parse(pageURL)
	if err != nil {
		return nil, err
	}
	action := u.Scheme + "://" + u.Host + "/login/username"
	return client.PostForm(action, url.Values{"id": {m[1]}, "username": {username}, "password": {password}})
}

// ReadPage reads a response's body and closes it.
func ReadPage(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b)
}
