package jobs

import (
	"fmt"
	"strings"
	"testing"
)

// The label-set label is sorted and deduplicated, and stays bounded
// however many label sets jobs bring: the first maxLabelSets keep their
// name, the rest (and overlong ones) are "other".
func TestLabelValuesAreBounded(t *testing.T) {
	l := newLabelValues(3)
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, "none"},
		{[]string{"x64", "linux", "linux"}, "linux,x64"},
		{[]string{"gpu"}, "gpu"},
		{[]string{"linux", "x64"}, "linux,x64"}, // seen: not a new set
		{[]string{"arm64"}, "arm64"},
		{[]string{"windows"}, "other"}, // the fourth set
		{[]string{"gpu"}, "gpu"},       // still its own
		{[]string{strings.Repeat("a", maxLabelSetLen+1)}, "other"},
		{[]string{"other"}, "other"},
	} {
		if got := l.of(tc.in); got != tc.want {
			t.Errorf("of(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for i := range 1000 {
		l.of([]string{fmt.Sprint("label-", i)})
	}
	if len(l.set) != 3 {
		t.Errorf("%d label sets kept, want 3", len(l.set))
	}
}
