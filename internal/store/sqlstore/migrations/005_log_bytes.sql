-- Bytes of output stored for a job, to bound it (jobs.Config.MaxLogBytes).
ALTER TABLE jobs ADD COLUMN log_bytes BIGINT NOT NULL DEFAULT 0;
