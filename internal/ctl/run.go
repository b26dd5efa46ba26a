package ctl

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runCommand() command {
	var labels, envs multiFlag
	return command{
		name: "run", args: "-- COMMAND [ARG...]", strictOrder: true,
		help: "Run a command as a job in a sandbox on an agent, stream its output and exit with its exit code.\n" +
			"Ctrl-C cancels the job (a second Ctrl-C stops waiting).",
		flags: func(fs *flag.FlagSet) {
			fs.Var(&labels, "label", "a label the agent must have (repeatable)")
			fs.Var(&envs, "env", "KEY=VALUE for the job's environment (repeatable)")
			fs.Duration("timeout", 0, "run time limit (default: the server's)")
			fs.Bool("detach", false, "print the job id and return without waiting")
			fs.String("idempotency-key", "", "a retried submission with the same key returns the first job")
			fs.String("image", "", "run the job in a container of this image (on an agent with the Docker executor)")
			fs.Bool("read-only-root", false, "with --image: the image's filesystem is read-only (the workspace and /tmp are not)")
		},
		run: func(e *env, g *globals, fs *flag.FlagSet) error {
			argv := fs.Args()
			if len(argv) == 0 {
				return usagef("no command: nimbus ctl run -- sh -c 'echo hi'")
			}
			req := apiv1.SubmitJob{Argv: argv, Labels: labels, TimeoutSeconds: int64(flagDuration(fs, "timeout") / time.Second),
				IdempotencyKey: flagString(fs, "idempotency-key")}
			if img := flagString(fs, "image"); img != "" {
				req.Container = &apiv1.Container{Image: img, ReadOnlyRoot: flagString(fs, "read-only-root") == "true"}
			} else if flagString(fs, "read-only-root") == "true" {
				return usagef("--read-only-root needs --image")
			}
			for _, kv := range envs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usagef("--env %q: want KEY=VALUE", kv)
				}
				if req.Env == nil {
					req.Env = map[string]string{}
				}
				req.Env[k] = v
			}
			c, err := g.client(e)
			if err != nil {
				return err
			}
			j, err := c.SubmitJob(e.ctx, req)
			if err != nil {
				return err
			}
			if flagString(fs, "detach") == "true" {
				fmt.Fprintln(e.stdout, j.ID)
				return nil
			}
			fmt.Fprintf(e.stderr, "nimbus: job %s queued\n", j.ID)
			return waitJob(e, c, j.ID)
		},
	}
}

// waitJob streams a job's output until it ends, cancels it on the first
// interrupt, and returns its exit code as an exitError.
func waitJob(e *env, c *apiclient.Client, id string) error {
	ctx, stop := context.WithCancel(e.ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- follow(ctx, e, c, id, true) }()
	interrupted := false
	for {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			return finalStatus(e, c, id, interrupted)
		case <-e.interrupts:
			if interrupted {
				fmt.Fprintf(e.stderr, "\nnimbus: stopped waiting; job %s may still be stopping\n", id)
				return exitError{130}
			}
			interrupted = true
			fmt.Fprintf(e.stderr, "\nnimbus: cancelling job %s (Ctrl-C again to stop waiting)\n", id)
			if _, err := c.CancelJob(e.ctx, id); err != nil {
				fmt.Fprintf(e.stderr, "nimbus: cancel: %v\n", err)
			}
		case <-e.ctx.Done():
			return exitError{130}
		}
	}
}

func finalStatus(e *env, c *apiclient.Client, id string, interrupted bool) error {
	j, err := c.GetJob(e.ctx, id)
	if err != nil {
		return err
	}
	switch {
	case j.State == "succeeded":
		return nil
	case j.ExitCode != nil && j.State == "failed":
		return exitError{*j.ExitCode}
	case j.State == "cancelled" && interrupted:
		fmt.Fprintf(e.stderr, "nimbus: job %s cancelled\n", id)
		return exitError{130}
	}
	msg := j.State
	if j.Reason != "" {
		msg += ": " + j.Reason
	}
	fmt.Fprintf(e.stderr, "nimbus: job %s %s\n", id, msg)
	return exitError{1}
}

// follow copies a job's output to stdout until the job has ended (or,
// without followMode, until what is stored now is written).
func follow(ctx context.Context, e *env, c *apiclient.Client, id string, followMode bool) error {
	return c.FollowJobLogs(ctx, id, followMode, func(ch apiv1.LogChunk) error {
		_, err := e.stdout.Write(ch.Data)
		return err
	})
}
