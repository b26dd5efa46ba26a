-- When a job was first leased (micros; 0: never): its queue time ends
-- there, not at its start (which waits for the agent's setup).
ALTER TABLE jobs ADD COLUMN first_leased_at BIGINT NOT NULL DEFAULT 0;
