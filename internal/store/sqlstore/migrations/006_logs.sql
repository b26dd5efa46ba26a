-- Job output belongs to internal/logs: every chunk carries its org (reads
-- are scoped by it), and what each job has used of its limit is kept
-- beside the chunks instead of in the jobs table.
ALTER TABLE log_chunks ADD COLUMN org_id TEXT NOT NULL DEFAULT '';
UPDATE log_chunks SET org_id = (SELECT jobs.org_id FROM jobs WHERE jobs.id = log_chunks.job_id);

CREATE TABLE log_usage (
    job_id TEXT PRIMARY KEY REFERENCES jobs (id),
    org_id TEXT NOT NULL,
    bytes  BIGINT NOT NULL
);
INSERT INTO log_usage (job_id, org_id, bytes) SELECT id, org_id, log_bytes FROM jobs WHERE log_bytes > 0;
ALTER TABLE jobs DROP COLUMN log_bytes;
