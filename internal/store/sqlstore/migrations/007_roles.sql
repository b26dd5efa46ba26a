-- The role that manages an agent: that of whoever created its join token.
-- Only that role or a stronger one may manage the agent (disable it).
-- Agents enrolled before are taken as an admin's, the weakest role that
-- could create a join token.
ALTER TABLE join_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE agents ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
