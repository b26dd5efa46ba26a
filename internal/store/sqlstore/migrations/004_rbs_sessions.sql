-- Remote Bazel: what an agent offers (its tunnel address, Bazel releases,
-- capacity) and the sessions it runs. One live session per key: the user,
-- the repository, the Bazel release and the startup options.
ALTER TABLE agents ADD COLUMN rbs TEXT NOT NULL DEFAULT '';

CREATE TABLE rbs_sessions (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES orgs (id),
    user_name     TEXT NOT NULL,
    session_key   TEXT NOT NULL,
    repo_hash     TEXT NOT NULL,
    install_md5   TEXT NOT NULL,
    request       TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    state         TEXT NOT NULL,
    address       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL,
    stopped_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX rbs_sessions_live_key ON rbs_sessions (session_key) WHERE state IN ('pending', 'ready', 'stopping');
CREATE INDEX rbs_sessions_org ON rbs_sessions (org_id, id);
CREATE INDEX rbs_sessions_agent ON rbs_sessions (agent_id) WHERE state IN ('pending', 'ready', 'stopping');
