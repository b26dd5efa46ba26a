package app

import (
	"slices"
	"testing"
)

func TestUpLabels(t *testing.T) {
	pool := []string{"self-hosted", "linux"}
	for _, tt := range []struct {
		label string
		can   bool
		want  []string
	}{
		{"docker", true, []string{"self-hosted", "linux", "docker"}},
		{"docker", false, pool},
		{"", true, pool},
		{"linux", true, pool},
	} {
		if got := upLabels(pool, tt.label, tt.can); !slices.Equal(got, tt.want) {
			t.Errorf("upLabels(%q, %v) = %v, want %v", tt.label, tt.can, got, tt.want)
		}
	}
	if len(pool) != 2 {
		t.Errorf("the pool was changed: %v", pool)
	}
}
