-- SQLite's search index is brought up to date behind the writer (the log
-- indexer, logindex.go) in large batches, not by a trigger on each line
-- written: log_lines_fts_mark holds the highest line id the index holds
-- every line up to (persisted, so a restart resumes from it). Searches
-- read the lines past it directly. Deleting an indexed line still takes
-- it out of the index, and brings the mark down to the highest id left:
-- SQLite gives a new line the highest id plus one, so a deleted newest
-- line's id may come again, and must then be past the mark. Nothing on
-- PostgreSQL.
{{log_search_v3}}
