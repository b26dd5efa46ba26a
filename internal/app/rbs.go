package app

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/proxy"
	"github.com/nimbus-build/nimbus/internal/rbs/sessionapi"
)

// RBSMain is `nimbus rbs`: remote Bazel on the developer's machine.
func RBSMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	const usage = `Usage: nimbus rbs <command>

  init    make this workspace's bazel run on a Nimbus agent (writes a javabase
          and adds startup --server_javabase to .bazelrc)
  proxy   the stand-in Bazel server the javabase starts (not run by hand)
`
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "proxy":
		return proxy.Main(args[1:])
	case "init":
		return rbsInit(args[1:], stdout, stderr, getenv)
	}
	fmt.Fprintf(stderr, "nimbus rbs: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func rbsInit(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("nimbus rbs init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "control plane URL (env NIMBUS_SERVER; default: a local nimbus up's, from --data-dir)")
	token := fs.String("token", "", "API token of role developer or more (env NIMBUS_TOKEN); saved 0600 in the credentials file")
	creds := fs.String("credentials", "", "credentials file to use or write (default ~/.config/nimbus/credentials.json, or a local nimbus up's admin.token)")
	dataDir := fs.String("data-dir", "", "data dir of a local nimbus up (env NIMBUS_DATA_DIR; default .nimbus)")
	workspace := fs.String("workspace", ".", "the Bazel workspace")
	javabase := fs.String("javabase", "", "where to write the javabase (default ~/.cache/nimbus/javabase)")
	caFile := fs.String("ca-file", "", "PEM bundle to trust for the control plane's HTTPS certificate")
	outputs := fs.String("outputs", rbs.OutputsTopLevel, "toplevel: bring a command's top-level outputs back; none: the storage is mounted here")
	printOnly := fs.Bool("print", false, "print the .bazelrc line instead of adding it")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: nimbus rbs init [flags]\n\nPoints this workspace's bazel at Nimbus: from then on `bazel build //...` runs on an agent.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "nimbus rbs init: "+format+"\n", a...)
		return 1
	}
	home, _ := os.UserHomeDir()
	dir := first(*dataDir, getenv("NIMBUS_DATA_DIR"), ".nimbus")
	srv := first(*server, getenv("NIMBUS_SERVER"))
	if srv == "" {
		b, err := os.ReadFile(filepath.Join(dir, "url"))
		if err != nil {
			return fail("no server: pass --server URL or set NIMBUS_SERVER")
		}
		srv = strings.TrimSpace(string(b))
	}
	tok := first(*token, getenv("NIMBUS_TOKEN"))
	credPath := *creds
	switch {
	case tok != "":
		if credPath == "" {
			credPath = filepath.Join(home, ".config", "nimbus", "credentials.json")
		}
		if err := os.MkdirAll(filepath.Dir(credPath), 0o700); err != nil {
			return fail("%v", err)
		}
		b, _ := json.Marshal(map[string]string{"server": srv, "token": tok})
		if err := os.WriteFile(credPath, append(b, '\n'), 0o600); err != nil {
			return fail("%v", err)
		}
	case credPath == "":
		credPath = filepath.Join(dir, "admin.token")
		if _, err := os.Stat(credPath); err != nil {
			return fail("no credentials: pass --token (or set NIMBUS_TOKEN), or --credentials FILE")
		}
	}
	credPath, _ = filepath.Abs(credPath)
	jb := *javabase
	if jb == "" {
		jb = filepath.Join(home, ".cache", "nimbus", "javabase")
	}
	jb, _ = filepath.Abs(jb)
	ws, err := filepath.Abs(*workspace)
	if err != nil {
		return fail("%v", err)
	}
	if _, err := os.Stat(filepath.Join(ws, "WORKSPACE")); err != nil {
		if _, err2 := os.Stat(filepath.Join(ws, "WORKSPACE.bazel")); err2 != nil {
			return fail("%s is not a Bazel workspace (no WORKSPACE file)", ws)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fail("%v", err)
	}
	exe, _ = filepath.EvalSymlinks(exe)
	ca := *caFile
	if ca != "" {
		ca, _ = filepath.Abs(ca)
	}
	if ca == "" && *server == "" && getenv("NIMBUS_SERVER") == "" && strings.HasPrefix(srv, "https:") {
		if local, err := filepath.Abs(filepath.Join(dir, "ca.crt")); err == nil {
			ca = local // a local nimbus up with --tls-auto
		}
	}
	cfg := rbs.ProxyConfig{Server: srv, Credentials: credPath, CAFile: ca, Outputs: *outputs}
	if strings.HasPrefix(srv, "https:") {
		// Mutual TLS to the control plane: a user certificate of its CA,
		// obtained once with the token.
		certFile, keyFile, err := userCertificate(srv, credPath, ca, filepath.Dir(credPath))
		if err != nil {
			return fail("user certificate: %v", err)
		}
		cfg.ClientCert, cfg.ClientKey = certFile, keyFile
	}
	if err := rbs.WriteJavabase(jb, []string{exe, "rbs", "proxy"}, cfg); err != nil {
		return fail("%v", err)
	}
	if *printOnly {
		fmt.Fprintln(stdout, rbs.BazelrcLine(jb))
		return 0
	}
	if err := rbs.AddToBazelrc(ws, jb); err != nil {
		return fail("%v", err)
	}
	fmt.Fprintf(stdout, "Added %q to %s.\nbazel now runs on Nimbus (%s); `bazel shutdown` ends the local proxy, `nimbus ctl sessions stop` the remote server.\n",
		rbs.BazelrcLine(jb), filepath.Join(ws, ".bazelrc"), srv)
	return 0
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// userCertificate asks the control plane for a user certificate over a
// fresh key, and saves both (0600) beside the credentials.
func userCertificate(server, credPath, caFile, dir string) (certFile, keyFile string, err error) {
	tok, err := sessionapi.ReadToken(credPath)
	if err != nil {
		return "", "", err
	}
	key, csr, err := pki.NewCSR()
	if err != nil {
		return "", "", err
	}
	hc, err := apiclient.HTTPClientTrusting(caFile, nil)
	if err != nil {
		return "", "", err
	}
	c := apiclient.New(server, tok)
	c.HTTP = hc
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.RBSCertificate(ctx, string(csr))
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "rbs-client.crt"), filepath.Join(dir, "rbs-client.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certFile, []byte(out.CertPEM), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
