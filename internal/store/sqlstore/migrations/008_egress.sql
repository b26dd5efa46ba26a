-- Each job's network: the egress policy it was leased with and the report
-- its agent sent with the completion (JSON documents of apiv1).
CREATE TABLE job_egress (
    job_id      TEXT PRIMARY KEY REFERENCES jobs (id),
    org_id      TEXT NOT NULL,
    policy      TEXT NOT NULL,
    report      TEXT NOT NULL DEFAULT '',
    leased_at   BIGINT NOT NULL,
    reported_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX job_egress_reported ON job_egress (org_id, reported_at);
