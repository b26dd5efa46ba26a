package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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
		},
		run: func(e *env, g *globals, fs *flag.FlagSet) error {
			argv := fs.Args()
			if len(argv) == 0 {
				return usagef("no command: nimbus ctl run -- sh -c 'echo hi'")
			}
			req := apiv1.SubmitJob{Argv: argv, Labels: labels, TimeoutSeconds: int64(flagDuration(fs, "timeout") / time.Second),
				IdempotencyKey: flagString(fs, "idempotency-key")}
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
			var j apiv1.Job
			if _, err := c.Do(e.ctx, http.MethodPost, "/api/v1/jobs", req, &j); err != nil {
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
			if _, err := c.Do(e.ctx, http.MethodPost, "/api/v1/jobs/"+id+"/cancel", struct{}{}, nil); err != nil {
				fmt.Fprintf(e.stderr, "nimbus: cancel: %v\n", err)
			}
		case <-e.ctx.Done():
			return exitError{130}
		}
	}
}

func finalStatus(e *env, c *apiclient.Client, id string, interrupted bool) error {
	var j apiv1.Job
	if _, err := c.Do(e.ctx, http.MethodGet, "/api/v1/jobs/"+id, nil, &j); err != nil {
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

// follow copies a job's output to stdout, resuming after the last chunk
// seen when the connection drops, until the job has ended (or, without
// follow, until what is stored now is written).
func follow(ctx context.Context, e *env, c *apiclient.Client, id string, followMode bool) error {
	cursor := ""
	for attempt := 0; ; attempt++ {
		q := url.Values{"format": {"ndjson"}}
		if followMode {
			q.Set("follow", "1")
		}
		if cursor != "" {
			q.Set("after", cursor)
		}
		resp, err := c.Raw(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(id)+"/logs?"+q.Encode(), nil)
		if err == nil {
			cursor, err = copyChunks(resp.Body, e.stdout, cursor)
			resp.Body.Close()
			if err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !apiclient.Retryable(err) {
			return err
		}
		wait := apiclient.Backoff(attempt, 5*time.Second)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func copyChunks(r io.Reader, w io.Writer, cursor string) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var c apiv1.LogChunk
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return cursor, fmt.Errorf("log stream: %w", err)
		}
		if _, err := w.Write(c.Data); err != nil {
			return cursor, err
		}
		cursor = strconv.FormatInt(c.Fence, 10) + "." + strconv.FormatInt(c.Seq, 10)
	}
	if err := sc.Err(); err != nil {
		return cursor, err
	}
	return cursor, nil
}

func logsCommand() command {
	return command{
		name: "logs", args: "JOB", help: "Print a job's output; with -f, follow it until the job ends.",
		flags: func(fs *flag.FlagSet) {
			fs.Bool("f", false, "follow the output as it is produced")
		},
		run: func(e *env, g *globals, fs *flag.FlagSet) error {
			id, err := oneArg(fs, "job id")
			if err != nil {
				return err
			}
			c, err := g.client(e)
			if err != nil {
				return err
			}
			err = follow(e.ctx, e, c, id, flagString(fs, "f") == "true")
			if errors.Is(err, context.Canceled) {
				return exitError{130}
			}
			return err
		},
	}
}
