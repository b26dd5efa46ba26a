// Package ctl is `nimbus ctl`, the admin and user CLI over the public API.
package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nimbus-build/nimbus/internal/apiclient"
)

// env is what a command sees of its surroundings.
type env struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// interrupts delivers Ctrl-C while a command runs (run, logs -f).
	interrupts <-chan os.Signal
}

// globals are the flags every command takes.
type globals struct {
	server  string
	token   string
	dataDir string
	caFile  string
	json    bool
}

func (g *globals) register(fs *flag.FlagSet) {
	// The current values are the defaults: flags given before the command
	// survive registering them again on the command's own flag set.
	fs.StringVar(&g.server, "server", g.server, "server URL (env NIMBUS_SERVER; default: the URL of a local nimbus up found in --data-dir)")
	fs.StringVar(&g.token, "token", g.token, "API token (env NIMBUS_TOKEN; default: <data-dir>/admin.token)")
	fs.StringVar(&g.dataDir, "data-dir", g.dataDir, "data dir of a local nimbus up (env NIMBUS_DATA_DIR; default .nimbus)")
	fs.StringVar(&g.caFile, "ca-file", g.caFile, "PEM bundle to trust for an HTTPS server (env NIMBUS_CA_FILE; default <data-dir>/ca.crt for a local nimbus up)")
	fs.BoolVar(&g.json, "json", g.json, "print JSON instead of tables")
}

// client resolves the server and token: flags, then the environment, then
// the data dir of a local `nimbus up`.
func (g *globals) client(e *env) (*apiclient.Client, error) {
	dir := first(g.dataDir, e.getenv("NIMBUS_DATA_DIR"), ".nimbus")
	server := first(g.server, e.getenv("NIMBUS_SERVER"))
	caFile := first(g.caFile, e.getenv("NIMBUS_CA_FILE"))
	if server == "" {
		b, err := os.ReadFile(filepath.Join(dir, "url"))
		if err != nil {
			return nil, fmt.Errorf("no server: pass --server URL or set NIMBUS_SERVER (no local `nimbus up` found in %s)", dir)
		}
		server = strings.TrimSpace(string(b))
		if local := filepath.Join(dir, "ca.crt"); caFile == "" && strings.HasPrefix(server, "https:") {
			caFile = local
		}
	}
	token := first(g.token, e.getenv("NIMBUS_TOKEN"))
	if token == "" {
		b, err := os.ReadFile(filepath.Join(dir, "admin.token"))
		if err != nil {
			return nil, fmt.Errorf("no token: pass --token or set NIMBUS_TOKEN (no %s found)", filepath.Join(dir, "admin.token"))
		}
		token = strings.TrimSpace(string(b))
	}
	c := apiclient.New(server, token)
	c.UserAgent = "nimbus-ctl"
	if caFile != "" {
		hc, err := apiclient.HTTPClientTrusting(caFile, nil)
		if err != nil {
			return nil, err
		}
		c.HTTP = hc
	}
	return c, nil
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// command is one `nimbus ctl` command.
type command struct {
	name  string // "jobs list"
	args  string // usage of positional arguments
	help  string
	flags func(fs *flag.FlagSet) // extra flags
	// strictOrder stops flag parsing at the first argument (run: what
	// follows is the job's command line).
	strictOrder bool
	run         func(e *env, g *globals, fs *flag.FlagSet) error
}

// usageError is a mistake on the command line (exit 2).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitError ends the command with a code (run passes on the job's).
type exitError struct{ code int }

func (x exitError) Error() string { return fmt.Sprintf("exit %d", x.code) }

// Main runs `nimbus ctl args…` and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, interrupts <-chan os.Signal) int {
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, getenv: getenv, interrupts: interrupts}
	cmds := commands()
	// Global flags may come before the command.
	var g globals
	pre := flag.NewFlagSet("nimbus ctl", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	g.register(pre)
	if err := pre.Parse(args); err != nil {
		fmt.Fprintf(stderr, "nimbus ctl: %v\n\n", err)
		printUsage(stderr, cmds)
		return 2
	}
	rest := pre.Args()
	if len(rest) == 0 || rest[0] == "help" {
		printUsage(stdout, cmds)
		if len(rest) == 0 {
			return 2
		}
		return 0
	}
	cmd, n := find(cmds, rest)
	if cmd == nil {
		fmt.Fprintf(stderr, "nimbus ctl: unknown command %q\n\n", strings.Join(rest[:min(2, len(rest))], " "))
		printUsage(stderr, cmds)
		return 2
	}
	fs := flag.NewFlagSet("nimbus ctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	g.register(fs)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: nimbus ctl %s [flags] %s\n\n%s\n\nFlags:\n", cmd.name, cmd.args, cmd.help)
		fs.PrintDefaults()
	}
	parse := parseInterspersed
	if cmd.strictOrder {
		parse = parseStrict
	}
	if err := parse(fs, rest[n:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	err := cmd.run(e, &g, fs)
	var ue usageError
	var xe exitError
	var ae *apiclient.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &xe):
		return xe.code
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "nimbus ctl %s: %s\n", cmd.name, ue.msg)
		fs.Usage()
		return 2
	case errors.As(err, &ae):
		fmt.Fprintf(stderr, "nimbus ctl %s: %s\n", cmd.name, ae.Message)
		return 1
	}
	fmt.Fprintf(stderr, "nimbus ctl %s: %v\n", cmd.name, err)
	return 1
}

func find(cmds []command, args []string) (*command, int) {
	for i := range cmds {
		words := strings.Fields(cmds[i].name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == cmds[i].name {
			return &cmds[i], len(words)
		}
	}
	return nil, 0
}

func printUsage(w io.Writer, cmds []command) {
	fmt.Fprintf(w, "Usage: nimbus ctl [--server URL] [--token TOKEN] <command> [flags]\n\nCommands:\n")
	sorted := append([]command(nil), cmds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-26s %s\n", c.name+" "+c.args, strings.SplitN(c.help, "\n", 2)[0])
	}
	fmt.Fprintf(w, "\nThe server and token come from --server/--token, NIMBUS_SERVER/NIMBUS_TOKEN,\nor the data dir of a local `nimbus up` (--data-dir, NIMBUS_DATA_DIR, default .nimbus).\n")
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// parseStrict parses flags up to the first argument, as package flag does.
func parseStrict(fs *flag.FlagSet, args []string) error { return fs.Parse(args) }

// parseInterspersed lets flags come after arguments too
// (`orgs create acme --github-id 42`); everything after "--" is an
// argument. The arguments end up in fs.Args().
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	head, tail := args, []string(nil)
	for i, a := range args {
		if a == "--" {
			head, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(head); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		head = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, append(pos, tail...)...))
}
