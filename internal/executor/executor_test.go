package executor

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestLimitError(t *testing.T) {
	tests := []struct {
		err  *LimitError
		want string
	}{
		{&LimitError{Resource: "memory", Limit: 2 << 30}, "memory limit 2 GiB exceeded"},
		{&LimitError{Resource: "disk", Limit: 10 << 30}, "disk limit 10 GiB exceeded"},
		{&LimitError{Resource: "memory", Limit: 1536 << 20}, "memory limit 1.5 GiB exceeded"},
		{&LimitError{Resource: "disk", Limit: 64 << 20, Detail: "no inode left"}, "disk limit 64 MiB exceeded (no inode left)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		wrapped := fmt.Errorf("run: %w", tt.err)
		var le *LimitError
		if !errors.Is(wrapped, ErrLimitExceeded) || !errors.As(wrapped, &le) || le != tt.err {
			t.Errorf("%v: not matched through a wrap", tt.err)
		}
	}
	if errors.Is(ErrTimeout, ErrLimitExceeded) {
		t.Error("ErrTimeout matches ErrLimitExceeded")
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 bytes", 100: "100 bytes", 1024: "1 KiB", 1536: "1.5 KiB", 64 << 20: "64 MiB",
		2 << 30: "2 GiB", 3 << 40: "3 TiB", 1<<30 + 1: "1 GiB",
	} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	good := []Limits{{}, {CPUs: 0.5, Memory: 1 << 30, Pids: 100, Disk: 10 << 30}, {Memory: MinMemory, Pids: MinPids, Disk: MinDisk, CPUs: MinCPUs}}
	for _, l := range good {
		if err := l.Validate(); err != nil {
			t.Errorf("%+v: %v", l, err)
		}
	}
	bad := map[string]Limits{
		"cpu":    {CPUs: -1},
		"cpu ":   {CPUs: 0.001},
		"memory": {Memory: 1 << 20},
		"pids":   {Pids: 3},
		"disk":   {Disk: -5},
	}
	for want, l := range bad {
		if err := l.Validate(); err == nil || !strings.HasPrefix(err.Error(), strings.TrimSpace(want)+" limit") {
			t.Errorf("%+v: %v, want an error about the %s limit", l, err, want)
		}
	}
}
