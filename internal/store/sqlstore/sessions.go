package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

type sessions struct{ repos }

var _ store.Sessions = sessions{}

const sessionColumns = `id, org_id, user_name, session_key, repo_hash, install_md5, request, agent_id, state, address, reason,
	created_at, updated_at, last_used_at, stopped_at`

const liveSessions = `('pending', 'ready', 'stopping')`

func scanSession(row interface{ Scan(...any) error }) (store.Session, error) {
	var s store.Session
	var created, updated, used, stopped int64
	err := row.Scan(&s.ID, &s.OrgID, &s.User, &s.Key, &s.RepoHash, &s.InstallMD5, &s.Request, &s.AgentID, &s.State, &s.Address,
		&s.Reason, &created, &updated, &used, &stopped)
	s.CreatedAt, s.UpdatedAt, s.LastUsedAt, s.StoppedAt = fromMicros(created), fromMicros(updated), fromMicros(used), fromMicros(stopped)
	return s, err
}

func (x sessions) Create(ctx context.Context, s store.Session) error {
	_, err := x.exec(ctx, `INSERT INTO rbs_sessions (`+sessionColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		s.ID, s.OrgID, s.User, s.Key, s.RepoHash, s.InstallMD5, s.Request, s.AgentID, s.State, s.Address, s.Reason,
		micros(s.CreatedAt), micros(s.UpdatedAt), micros(s.LastUsedAt), micros(s.StoppedAt))
	if err != nil {
		return conflict(err, "create session")
	}
	return nil
}

func (x sessions) Get(ctx context.Context, id string) (store.Session, error) {
	s, err := scanSession(x.r.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM rbs_sessions WHERE id = $1`, id))
	if err != nil {
		return s, notFound(err, "session "+id)
	}
	return s, nil
}

func (x sessions) GetLive(ctx context.Context, key string) (store.Session, error) {
	s, err := scanSession(x.r.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM rbs_sessions WHERE session_key = $1 AND state IN `+liveSessions, key))
	if err != nil {
		return s, notFound(err, "live session")
	}
	return s, nil
}

func (x sessions) List(ctx context.Context, f store.SessionFilter) ([]store.Session, error) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.OrgID != "" {
		add("org_id = ?", f.OrgID)
	}
	if f.User != "" {
		add("user_name = ?", f.User)
	}
	if f.AgentID != "" {
		add("agent_id = ?", f.AgentID)
	}
	if f.LiveOnly {
		conds = append(conds, "state IN "+liveSessions)
	}
	q := `SELECT ` + sessionColumns + ` FROM rbs_sessions`
	if len(conds) > 0 {
		q += ` WHERE ` + strings.Join(conds, " AND ")
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 200
	}
	rows, err := x.r.QueryContext(ctx, q+` ORDER BY id DESC LIMIT `+strconv.Itoa(limit), args...)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return scanSessions(rows)
}

func scanSessions(rows *sql.Rows) ([]store.Session, error) {
	defer rows.Close()
	var out []store.Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (x sessions) CountLive(ctx context.Context, agentID string) (int, error) {
	var n int
	err := x.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM rbs_sessions WHERE agent_id = $1 AND state IN `+liveSessions, agentID).Scan(&n)
	return n, err
}

func (x sessions) Transition(ctx context.Context, id string, from []store.SessionState, to store.SessionState, address, reason string, now time.Time) (store.Session, error) {
	if len(from) == 0 {
		return store.Session{}, errors.New("transition: no source state")
	}
	args := []any{id, to, address, reason, micros(now)}
	ph := make([]string, len(from))
	for i, f := range from {
		args = append(args, f)
		ph[i] = "$" + strconv.Itoa(len(args))
	}
	var s store.Session
	err := x.writeRow(ctx, func(row interface{ Scan(...any) error }) error {
		var err error
		s, err = scanSession(row)
		return err
	}, `UPDATE rbs_sessions SET state = $2,
		address = CASE WHEN $3 = '' THEN address ELSE $3 END,
		reason = CASE WHEN $4 = '' THEN reason ELSE $4 END,
		updated_at = $5,
		stopped_at = CASE WHEN $2 IN ('stopped', 'failed') THEN $5 ELSE stopped_at END
		WHERE id = $1 AND state IN (`+strings.Join(ph, ", ")+`) RETURNING `+sessionColumns, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("session %s not in %v: %w", id, from, store.ErrNotFound)
	}
	if err != nil {
		return s, fmt.Errorf("session %s: %w", id, err)
	}
	return s, nil
}

func (x sessions) Touch(ctx context.Context, id string, now time.Time) error {
	res, err := x.exec(ctx, `UPDATE rbs_sessions SET last_used_at = $2 WHERE id = $1 AND state IN `+liveSessions, id, micros(now))
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("touch session %s: %w", id, store.ErrNotFound)
	}
	return nil
}

func (x sessions) Idle(ctx context.Context, before time.Time) ([]store.Session, error) {
	rows, err := x.r.QueryContext(ctx, `SELECT `+sessionColumns+` FROM rbs_sessions WHERE state IN ('pending', 'ready') AND last_used_at < $1 ORDER BY id`, micros(before))
	if err != nil {
		return nil, fmt.Errorf("idle sessions: %w", err)
	}
	return scanSessions(rows)
}
