package bwrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/workspace"
)

// checkTimeout bounds the trial sandbox of Check.
const checkTimeout = time.Minute

// Check verifies that sandboxes can run here with opts: that bubblewrap is
// installed, that the sandbox uid can reach WorkRoot, and that a trial
// sandbox runs `true` and exits 0. The agent calls it at start; its error
// says what is wrong and, where it can, how to fix it.
func Check(ctx context.Context, opts Options) error {
	opts = opts.withDefaults()
	opts.KeepWorkspace = false
	if _, err := os.Stat(opts.Path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bubblewrap not found at %s: install it with `apt-get install bubblewrap`", opts.Path)
	} else if err != nil {
		return fmt.Errorf("bubblewrap at %s: %w", opts.Path, err)
	}
	e, err := New(opts)
	if err != nil {
		return err
	}
	uid, gid := e.IDs(0)
	if err := workspace.CheckTraversable(opts.WorkRoot, uid, gid); err != nil {
		return fmt.Errorf("work root %s is out of reach of sandbox uids: %w", opts.WorkRoot, err)
	}
	var out bytes.Buffer
	res, err := e.Run(ctx, executor.Spec{
		JobID:   "bwrap-check",
		Argv:    []string{"true"},
		Output:  &out,
		Timeout: checkTimeout,
	})
	switch {
	case err != nil:
		return fmt.Errorf("bubblewrap cannot create a sandbox here: %w", err)
	case res.Cause != nil:
		return fmt.Errorf("bubblewrap trial sandbox stopped: %w", res.Cause)
	case res.ExitCode != 0:
		return fmt.Errorf("bubblewrap trial sandbox exited with status %d: %s", res.ExitCode, strings.TrimSpace(out.String()))
	}
	return nil
}
