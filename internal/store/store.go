// Package store defines Nimbus's durable records and the per-aggregate
// interfaces that hold them. internal/store/sqlstore implements them on SQLite
// and PostgreSQL; internal/store/storetest is the conformance suite both run.
//
// Every method that changes state is atomic: it either happens completely or
// not at all. Methods that enforce the job state machine (lease, renew,
// complete, expire) do so in the database, so several control-plane replicas
// can share one PostgreSQL database.
package store

import (
	"context"
	"errors"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrNotFound: no such record (or not visible to the caller's org).
	ErrNotFound = errors.New("not found")
	// ErrConflict: a uniqueness constraint would be violated.
	ErrConflict = errors.New("already exists")
	// ErrStaleFence: the fence presented is not the job's current lease.
	ErrStaleFence = errors.New("stale fence")
	// ErrFinished: the job has already reached a terminal state.
	ErrFinished = errors.New("job already finished")
	// ErrTokenUsed: a one-time join token was already consumed or expired.
	ErrTokenUsed = errors.New("join token already used or expired")
)

// Repos gives access to each aggregate. Store and the handle passed to
// InTx both implement it.
type Repos interface {
	Orgs() Orgs
	Tokens() Tokens
	Agents() Agents
	Jobs() Jobs
	Audit() Audit
	Keys() Keys
	Deliveries() Deliveries
	Sessions() Sessions
}

// Store is the whole database.
type Store interface {
	Repos
	// InTx runs fn in one transaction: every change made through the Repos
	// it is given commits together or not at all. fn must not call InTx.
	InTx(ctx context.Context, fn func(Repos) error) error
	// Ping checks that the database answers (readiness).
	Ping(ctx context.Context) error
	// Engine names the engine: "sqlite" or "postgres".
	Engine() string
	Close() error
}
