// Package storetest is the conformance suite every store engine passes, and
// the helpers that open a fresh, real database for a test on each engine.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"testing"

	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

// Engines are the engines every store test runs on.
var Engines = []string{"sqlite", "postgres"}

// Open returns a store on a new, empty database of the engine, removed when
// the test ends. PostgreSQL comes from NIMBUS_TEST_POSTGRES.
func Open(t testing.TB, engine string) *sqlstore.DB {
	t.Helper()
	dsn := DSN(t, engine)
	db, err := sqlstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open %s store: %v", engine, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// DSN creates a new, empty database of the engine and returns its DSN; it
// is dropped when the test ends.
func DSN(t testing.TB, engine string) string {
	t.Helper()
	switch engine {
	case "sqlite":
		return t.TempDir() + "/nimbus.db"
	case "postgres":
		return newPostgresDatabase(t, testenv.PostgresURL(t))
	}
	t.Fatalf("unknown engine %q", engine)
	return ""
}

func newPostgresDatabase(t testing.TB, base string) string {
	t.Helper()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer admin.Close()
	b := make([]byte, 6)
	rand.Read(b)
	name := "nimbus_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
		t.Fatalf("postgres: create database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`)
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("postgres url: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// ForEachEngine runs fn as a subtest on a fresh store of every engine.
func ForEachEngine(t *testing.T, fn func(t *testing.T, s store.Store)) {
	for _, e := range Engines {
		t.Run(e, func(t *testing.T) {
			fn(t, Open(t, e))
		})
	}
}

// OpenPath opens (or creates) a SQLite store at path, closed when the test ends.
func OpenPath(t testing.TB, path string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Backup copies a SQLite store to a new file and returns its path.
func Backup(t testing.TB, db *sqlstore.DB, path string) string {
	t.Helper()
	dest := path + ".backup"
	if err := db.Backup(context.Background(), dest); err != nil {
		t.Fatalf("backup: %v", err)
	}
	return dest
}

// NewJob creates a queued job of org (and the org, named after its id,
// when it does not exist yet) and returns the job's id.
func NewJob(t testing.TB, s store.Store, org string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Orgs().Get(ctx, org); errors.Is(err, store.ErrNotFound) {
		if err := s.Orgs().Create(ctx, store.Org{ID: org, Name: org, CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	j := newJob(org)
	if _, _, err := s.Jobs().Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	return j.ID
}
