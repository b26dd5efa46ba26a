-- Nimbus schema, version 1. Written once for SQLite and PostgreSQL:
-- {{bytes}} and {{serial}} are the only words the dialects spell
-- differently. Times are microseconds since the Unix epoch; 0 means unset.

CREATE TABLE orgs (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    github_owner_id BIGINT,
    github_login    TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX orgs_github_owner ON orgs (github_owner_id) WHERE github_owner_id IS NOT NULL;

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs (id),
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       {{bytes}} NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX api_tokens_org ON api_tokens (org_id);

CREATE TABLE join_tokens (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs (id),
    hash       {{bytes}} NOT NULL UNIQUE,
    labels     TEXT NOT NULL,
    max_jobs   INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT NOT NULL,
    used_by    TEXT NOT NULL
);

CREATE TABLE agents (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES orgs (id),
    name           TEXT NOT NULL,
    allowed_labels TEXT NOT NULL,
    labels         TEXT NOT NULL,
    max_jobs       INTEGER NOT NULL,
    hostname       TEXT NOT NULL,
    version        TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    disabled_at    BIGINT NOT NULL
);
CREATE INDEX agents_org ON agents (org_id);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES orgs (id),
    source           TEXT NOT NULL,
    job_key          TEXT,
    state            TEXT NOT NULL,
    labels           TEXT NOT NULL,
    spec             TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    fence            BIGINT NOT NULL,
    agent_id         TEXT NOT NULL,
    lease_expires_at BIGINT NOT NULL,
    cancel_requested BOOLEAN NOT NULL,
    runner_name      TEXT NOT NULL,
    exit_code        INTEGER,
    reason           TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    not_before       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    started_at       BIGINT NOT NULL,
    finished_at      BIGINT NOT NULL,
    github           TEXT
);
CREATE UNIQUE INDEX jobs_key ON jobs (job_key) WHERE job_key IS NOT NULL;
CREATE INDEX jobs_queue ON jobs (org_id, id) WHERE state = 'queued';
CREATE INDEX jobs_live ON jobs (lease_expires_at) WHERE state IN ('leased', 'running');
CREATE INDEX jobs_agent ON jobs (agent_id) WHERE state IN ('leased', 'running');
CREATE INDEX jobs_org ON jobs (org_id, id);
CREATE INDEX jobs_runner ON jobs (runner_name) WHERE runner_name <> '';

-- One row per label of a job, so the queue can match an agent's labels
-- with a plain NOT EXISTS on both engines.
CREATE TABLE job_labels (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    label  TEXT NOT NULL,
    PRIMARY KEY (job_id, label)
);

CREATE TABLE log_chunks (
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    fence      BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    data       {{bytes}} NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, fence, seq)
);

CREATE TABLE audit_log (
    id     {{serial}},
    at     BIGINT NOT NULL,
    org_id TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_org ON audit_log (org_id, id);

CREATE TABLE signing_keys (
    id             TEXT PRIMARY KEY,
    algorithm      TEXT NOT NULL,
    public_key     {{bytes}} NOT NULL,
    private_sealed {{bytes}} NOT NULL,
    created_at     BIGINT NOT NULL,
    retired_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT NOT NULL
);

CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    sealed     {{bytes}} NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id          TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
