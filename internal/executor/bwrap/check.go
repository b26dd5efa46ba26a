package bwrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// checkTimeout bounds Check's self-test sandbox.
const checkTimeout = 30 * time.Second

// Check verifies that bubblewrap is installed at opts.BwrapPath and can run
// a sandbox here as Run would (same uid, same WorkRoot, the same limits),
// for the agent to call at start. Its error says what is wrong and, where
// it can, how to fix it. Like New, it removes the leftovers of an earlier
// Executor on the work root; it leaves nothing behind.
func Check(ctx context.Context, opts Options, limits executor.Limits) (err error) {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	info, err := os.Stat(o.BwrapPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("bubblewrap not found at %s: install it with `apt-get install bubblewrap`", o.BwrapPath)
	case err != nil:
		return fmt.Errorf("bubblewrap at %s: %w", o.BwrapPath, err)
	case info.IsDir() || info.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("bubblewrap at %s is not an executable file", o.BwrapPath)
	}
	e, err := New(o)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, e.Close()) }()
	uid, _, err := e.Identity(0)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	res, err := e.Run(ctx, executor.Spec{
		JobID:   "bwrap-check",
		Argv:    []string{"id", "-u"},
		Timeout: checkTimeout,
		Output:  &out,
		Limits:  limits,
	})
	if err != nil {
		return fmt.Errorf("bubblewrap at %s cannot create a sandbox: %w%s", o.BwrapPath, err, hint(err.Error(), uid, o.WorkRoot))
	}
	got := strings.TrimSpace(out.String())
	switch {
	case res.Cause != nil:
		return fmt.Errorf("bubblewrap self-test stopped: %w", res.Cause)
	case res.ExitCode != 0:
		return fmt.Errorf("bubblewrap self-test `id -u` exited with status %d: %s", res.ExitCode, got)
	case got != strconv.Itoa(uid):
		return fmt.Errorf("bubblewrap self-test ran as uid %q, want %d", got, uid)
	}
	return nil
}

// hint suggests a fix for a known bubblewrap failure.
func hint(msg string, uid int, workRoot string) string {
	switch {
	case strings.Contains(msg, "namespace"):
		return " (unprivileged users must be allowed to create user namespaces: see the sysctls" +
			" kernel.unprivileged_userns_clone, user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns)"
	case strings.Contains(msg, "Permission denied") || strings.Contains(msg, "Can't find source path"):
		return fmt.Sprintf(" (uid %d must be able to reach the work root %s: give it and each of its parents o+x)", uid, workRoot)
	}
	return ""
}
