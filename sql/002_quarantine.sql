-- Spool files that are not spool documents (not JSON, truncated, wrong envelope). The bytes
-- are kept whole so nothing is lost; an operator inspects, fixes and re-spools them.
CREATE TABLE ingestd_quarantine (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity         text        NOT NULL,
    file_name      text        NOT NULL,
    error          text        NOT NULL,
    raw_bytes      bytea       NOT NULL,
    bytes          bigint      NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    UNIQUE (entity, file_name)
);
CREATE INDEX ingestd_quarantine_open ON ingestd_quarantine (entity) WHERE resolved_at IS NULL;
