-- What an applied staging row did to production, written by the reconciler's apply statement
-- in the same transaction as the row's outcome: 'new' (inserted), 'filled' (replaced a
-- placeholder), 'changed' (raw_data differed: version went up) or 'unchanged' (only synced_at
-- moved). NULL for every other outcome and for rows applied before this migration.
-- `ingestd resync` counts its run's records from it, whichever process reconciled them.
-- ingestd_ensure_staging_table (latest version: 007) is replaced to add the column to every
-- stg_ table, existing or new; `ingestd migrate` calls it for every entity.
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
    -- No CHECK constraint: adding one would scan every existing staging table at migrate time.
    EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS applied_as text', t);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (id) WHERE NOT processed',
                   t || '_due', t);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (processed_at) WHERE processed',
                   t || '_processed_at', t);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (id) WHERE outcome = ''dead''',
                   t || '_dead', t);
END
$fn$;
