-- SQLite's search index is brought up to date behind the writer (the log
-- indexer, logindex.go) in large batches, not by a trigger on each line
-- written: log_lines_fts_mark holds the highest line id the index holds
-- every line up to (persisted, so a restart resumes from it). Searches
-- read the lines past it directly. The triggers stay for the lines at or
-- below the mark only: a rowid reused after its line was deleted, and
-- deleting an indexed line. Nothing on PostgreSQL.
{{log_search_v3}}
