-- The GitHub id of the ephemeral runner started for a job's lease, so the
-- runner can be removed from GitHub when the lease ends without it.
ALTER TABLE jobs ADD COLUMN runner_id BIGINT NOT NULL DEFAULT 0;
