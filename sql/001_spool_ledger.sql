-- One row per spool file the stager has committed. The row is written in the same
-- transaction as the file's staging rows, so "is it in the ledger" and "are its records
-- staged" can never disagree: a replayed or re-delivered file finds its row and is skipped.
CREATE TABLE ingestd_spool_ledger (
    id          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    entity      text        NOT NULL,
    file_name   text        NOT NULL,   -- unique by construction (fetch time, run, page, nonce)
    outcome     text        NOT NULL CHECK (outcome IN ('loaded', 'quarantined', 'run_end')),
    source      text,
    run_id      text,
    mode        text,
    page        bigint,
    records     integer     NOT NULL DEFAULT 0,  -- records in the file
    staged      integer     NOT NULL DEFAULT 0,  -- new stg_ rows it produced
    duplicates  integer     NOT NULL DEFAULT 0,  -- records whose content was already staged
    flagged     integer     NOT NULL DEFAULT 0,  -- staged with invalid_reason set
    bytes       bigint      NOT NULL,
    fetched_at  timestamptz,
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, file_name)
);
CREATE INDEX ingestd_spool_ledger_run ON ingestd_spool_ledger (entity, run_id);
CREATE INDEX ingestd_spool_ledger_loaded_at ON ingestd_spool_ledger (loaded_at);
