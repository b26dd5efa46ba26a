package insights

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/store"
)

// tailScan is how many of a failed job's last lines are searched for
// error lines.
const tailScan = 500

// errorLine matches lines that say something failed: compilers' and
// test runners' "error:", Go's "--- FAIL", panics, exceptions, GitHub's
// ::error:: and ##[error] commands.
var errorLine = regexp.MustCompile(`(?i)\b(error|errors|failed|failure|fail|fatal|panic|exception|traceback)\b|##\[error\]|::error`)

// ansi matches terminal escape sequences (colours), which the match
// ignores.
var ansi = regexp.MustCompile("\x1b\\[[0-9;?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(?:\x07|\x1b\\\\)|\x1b[@-Z\\\\-_]")

// failingLines returns up to n lines of org's job: the last that look
// like errors among its last tailScan lines, or its last n lines when
// none does. A job whose log is gone (or was never kept) has none.
func (s *Service) failingLines(ctx context.Context, org, job string, n int) ([]logs.Line, error) {
	tail, err := s.lines.Tail(ctx, org, job, tailScan)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var hits []logs.Line
	for _, l := range tail {
		if errorLine.MatchString(stripped(l.Text)) {
			hits = append(hits, l)
		}
	}
	if len(hits) == 0 {
		hits = tail
	}
	return hits[max(len(hits)-n, 0):], nil
}

// stripped is text without terminal escapes.
func stripped(text string) string {
	if !strings.Contains(text, "\x1b") {
		return text
	}
	return ansi.ReplaceAllString(text, "")
}
