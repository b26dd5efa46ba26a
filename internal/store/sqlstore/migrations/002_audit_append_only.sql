-- The audit log is append-only: the database itself refuses to change or
-- delete an entry, whatever code runs against it.
{{audit_guard}}
