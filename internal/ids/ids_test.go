package ids

import (
	"testing"
	"time"
)

func TestOrdered(t *testing.T) {
	prev := ""
	for i := range 10000 {
		id := New("job")
		if !Valid("job", id) {
			t.Fatalf("invalid id %q", id)
		}
		if id <= prev {
			t.Fatalf("id %d %q not after %q", i, id, prev)
		}
		prev = id
	}
	later := "job_" + newAt(time.Now().Add(time.Hour))
	if later <= prev {
		t.Errorf("an id an hour later sorts first")
	}
}

func TestValid(t *testing.T) {
	for _, s := range []string{"", "job_", "agt_" + newAt(time.Now()), "job_../../etc/passwd0000000000", "job_0000000000000000000000000I"} {
		if Valid("job", s) {
			t.Errorf("Valid(%q) = true", s)
		}
	}
}
