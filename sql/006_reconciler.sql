-- The reconciler's bookkeeping.

-- Each staging row's outcome once processed: applied, superseded (an older version than the
-- one in production), skipped (invalid, reason in last_error) or dead (failed
-- reconciler.max_attempts times, error in last_error). NULL while waiting.
-- ingestd_ensure_staging_table (005) is replaced to add it to every stg_ table, existing or
-- new; `ingestd migrate` calls it for every entity.
CREATE OR REPLACE FUNCTION ingestd_ensure_staging_table(entity text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    t text := 'stg_' || entity;
BEGIN
    IF entity !~ '^[a-z_][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid entity name "%"', entity USING ERRCODE = '22023';
    END IF;
    EXECUTE format($ddl$
        CREATE TABLE IF NOT EXISTS %I (
            id                  bigint      GENERATED ALWAYS AS IDENTITY,
            raw_data            jsonb       NOT NULL,
            external_id         text,
            content_hash        uuid        PRIMARY KEY,
            fetched_at          timestamptz NOT NULL,
            run_id              text        NOT NULL,
            ledger_id           bigint      NOT NULL,
            invalid_reason      text,
            processed           boolean     NOT NULL DEFAULT false,
            processed_at        timestamptz,
            processing_attempts integer     NOT NULL DEFAULT 0,
            last_error          text,
            next_attempt_at     timestamptz NOT NULL DEFAULT now(),
            created_at          timestamptz NOT NULL DEFAULT now()
        )$ddl$, t);
    EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS outcome text', t);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (id) WHERE NOT processed',
                   t || '_due', t);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (processed_at) WHERE processed',
                   t || '_processed_at', t);
END
$fn$;

-- The ids every page of a full run carried, written by the stager with the page (so exactly
-- once). Staging keeps one row per distinct content, so an unchanged record leaves no new
-- staging row: this list, not stg_, tells which records a full run saw. Deleted once the
-- run's deletions are applied.
CREATE TABLE ingestd_full_run_ids (
    entity      text NOT NULL,
    run_id      text NOT NULL,
    external_id text NOT NULL
);
CREATE INDEX ingestd_full_run_ids_run ON ingestd_full_run_ids (entity, run_id);

-- A full run's deletions, applied once (reconciled_at set) or refused by the guard.
ALTER TABLE ingestd_fetch_runs
    ADD COLUMN reconciled_at timestamptz,
    ADD COLUMN deleted       bigint,
    ADD COLUMN undeleted     bigint,
    ADD COLUMN deletion      text CHECK (deletion IN ('applied', 'refused', 'superseded'));
CREATE INDEX ingestd_fetch_runs_pending ON ingestd_fetch_runs (entity, completed_at)
    WHERE mode = 'full' AND reconciled_at IS NULL;

-- Fuzzy reference links, for a person to confirm or correct.
CREATE TABLE ingestd_fuzzy_links (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity        text        NOT NULL,  -- the referencing entity
    record_id     text        NOT NULL,
    column_name   text        NOT NULL,
    unknown_id    text        NOT NULL,  -- the id the record gave, not found
    matched_id    text        NOT NULL,  -- the row it was linked to instead
    match_value   text        NOT NULL,
    distance      integer     NOT NULL,
    reviewed_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (entity, record_id, column_name, unknown_id)
);
