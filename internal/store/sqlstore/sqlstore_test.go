package sqlstore_test

import (
	"context"
	"testing"

	"github.com/nimbus-build/nimbus/internal/egress/egresstest"
	"github.com/nimbus-build/nimbus/internal/logs/logstest"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
	"github.com/nimbus-build/nimbus/internal/websession"
	"github.com/nimbus-build/nimbus/internal/websession/websessiontest"
)

func TestConformance(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store { return storetest.Open(t, engine) })
		})
	}
}

func TestLogsConformance(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			logstest.Run(t, func(t *testing.T) logstest.Env {
				db := storetest.Open(t, engine)
				return logstest.Env{Store: db.Logs(), NewJob: func(t *testing.T, org string) string { return storetest.NewJob(t, db, org) }}
			})
		})
	}
}

func TestEgressConformance(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			egresstest.Run(t, func(t *testing.T) egresstest.Env {
				db := storetest.Open(t, engine)
				return egresstest.Env{Store: db.Egress(), NewJob: func(t *testing.T, org string) string { return storetest.NewJob(t, db, org) }}
			})
		})
	}
}

// The database itself refuses to rewrite history, whatever code runs.
func TestAuditAppendOnly(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			db := storetest.Open(t, engine)
			ctx := context.Background()
			if err := db.Audit().Append(ctx, store.AuditEntry{OrgID: "o", Actor: "a", Action: "x", Target: "t"}); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{`UPDATE audit_log SET action = 'forged'`, `DELETE FROM audit_log`} {
				if err := db.ExecForTest(ctx, q); err == nil {
					t.Errorf("%s: succeeded on an append-only log", q)
				}
			}
		})
	}
}

// Opening an existing database applies nothing twice.
func TestReopen(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			dsn := storetest.DSN(t, engine)
			for range 2 {
				db, err := sqlstore.Open(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				db.Close()
			}
		})
	}
}

func TestWebSessionsConformance(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			websessiontest.Run(t, func(t *testing.T) websession.Store { return storetest.Open(t, engine).WebSessions() })
		})
	}
}
