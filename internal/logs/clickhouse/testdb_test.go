package clickhouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/nimbus-build/nimbus/internal/testenv"
)

// OpenTestStore returns a store on a database of its own on the test
// server (testenv.ClickHouseURL), dropped when the test ends.
func OpenTestStore(t testing.TB) *Store {
	t.Helper()
	base := testenv.ClickHouseURL(t)
	b := make([]byte, 6)
	rand.Read(b)
	s, err := Open(context.Background(), base+"/nimbus_test_"+hex.EncodeToString(b), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.DropDatabase(context.Background()); err != nil {
			t.Errorf("drop the test database: %v", err)
		}
	})
	return s
}
