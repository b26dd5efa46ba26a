package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Bad flags are refused with a message that names them, before anything
// starts.
func TestUIMainRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-jobs", "0"}, "-jobs, -log-lines and -runs must be at least 1"},
		{[]string{"-live", "-1"}, "-live not negative"},
		{[]string{"-idle", "0s"}, "-idle positive"},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
		{[]string{"-no-such-flag"}, "flag provided but not defined: -no-such-flag"},
	} {
		var out, errb bytes.Buffer
		if code := UIMain(context.Background(), tc.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
		if out.Len() != 0 {
			t.Errorf("%q: printed %q", tc.args, out.String())
		}
	}
}
