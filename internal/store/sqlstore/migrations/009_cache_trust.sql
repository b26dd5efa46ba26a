-- What an org trusts to write its build cache (store.CacheTrust); ref
-- patterns as JSON arrays of strings.
CREATE TABLE cache_trust (
    org_id         TEXT PRIMARY KEY REFERENCES orgs (id),
    untrusted_refs TEXT NOT NULL,
    ac_write_refs  TEXT NOT NULL,
    updated_by     TEXT NOT NULL,
    updated_at     BIGINT NOT NULL
);
