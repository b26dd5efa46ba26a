-- Dashboard sign-ins (internal/websession): one row per signed-in
-- browser. The cookie holds a random secret; only its SHA-256 is kept.
-- roles is a JSON array of {org, role}: the orgs the person may act in,
-- decided at sign-in; org_id is the one the browser acts in now.
CREATE TABLE web_sessions (
    id           TEXT PRIMARY KEY,
    hash         {{bytes}} NOT NULL UNIQUE,
    user_id      TEXT NOT NULL,
    provider     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    email        TEXT NOT NULL,
    name         TEXT NOT NULL,
    roles        TEXT NOT NULL,
    org_id       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    auth_at      BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
