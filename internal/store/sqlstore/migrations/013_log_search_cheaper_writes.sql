-- Cheaper writes of the log search index (SQLite; nothing on PostgreSQL).
-- The FTS5 trigram table no longer keeps each line's size (columnsize=0:
-- a b-tree row per line, only for ranking, which log search does not do),
-- and merges its segments 8 at a time instead of 4 (automerge), which
-- rewrites each line's trigrams fewer times as the index grows. The index
-- is rebuilt from log_lines: on a large database this migration takes a
-- while, once.
{{log_search_v2}}
