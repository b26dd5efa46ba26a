-- Jobs' output as lines (internal/logs): each line with its job, org,
-- repository, number, step, stream and time, for reading by line or step
-- and for search across jobs; a full-text index over their text (SQLite
-- FTS5 with trigrams, PostgreSQL pg_trgm where it can be installed).
-- Each job's ingest state replaces its usage row. Output stored before
-- this migration stays readable as raw output; it has no lines.
CREATE TABLE log_lines (
    id         {{rowid}},
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    org_id     TEXT NOT NULL,
    line       BIGINT NOT NULL,
    repo       TEXT NOT NULL,
    fence      BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    step       TEXT NOT NULL,
    stream     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    text       TEXT NOT NULL
);
CREATE UNIQUE INDEX log_lines_job_line ON log_lines (job_id, line);
CREATE INDEX log_lines_org_time ON log_lines (org_id, created_at);
{{log_search}}

CREATE TABLE log_state (
    job_id   TEXT PRIMARY KEY REFERENCES jobs (id),
    org_id   TEXT NOT NULL,
    version  BIGINT NOT NULL,
    fence    BIGINT NOT NULL,
    seq      BIGINT NOT NULL,
    used     BIGINT NOT NULL,
    lines    BIGINT NOT NULL,
    pending  {{bytes}} NOT NULL,
    step     TEXT NOT NULL,
    full_log BOOLEAN NOT NULL
);
INSERT INTO log_state (job_id, org_id, version, fence, seq, used, lines, pending, step, full_log)
SELECT u.job_id, u.org_id, 1,
       COALESCE((SELECT MAX(c.fence) FROM log_chunks c WHERE c.job_id = u.job_id), 0),
       COALESCE((SELECT MAX(c.seq) FROM log_chunks c WHERE c.job_id = u.job_id
                 AND c.fence = (SELECT MAX(d.fence) FROM log_chunks d WHERE d.job_id = u.job_id)), -1),
       u.bytes, 0, {{empty_bytes}}, '', FALSE
FROM log_usage u;
DROP TABLE log_usage;
