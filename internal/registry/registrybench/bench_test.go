package registrybench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/registry/registrytest"
)

// The benchmark runs end to end on a small image, so it does not rot;
// the single-flight property it reports holds: concurrent cold pulls
// through Nimbus fetch one copy from the origin. (Speed is the table's
// business, not the test's.)
func TestBenchSmall(t *testing.T) {
	registrytest.Binary(t)
	registrytest.NewSkopeo(t)
	o := Options{Size: 2 << 20, Layers: 2, Concurrency: 3, HeadWorkers: 2, HeadDuration: 200 * time.Millisecond, WorkDir: t.TempDir()}
	rows, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	Print(&out, o, rows)
	t.Log("\n" + out.String())
	for _, r := range rows {
		if strings.HasSuffix(r.Name, "origin bytes") && (r.Nimbus < 0.999 || r.Nimbus > 1.001) {
			t.Errorf("%s: nimbus fetched %.2f copies from the origin, want 1", r.Name, r.Nimbus)
		}
	}
}
