-- stg_<entity>: raw records, one row per distinct content. `ingestd migrate` calls this for
-- every entity of the config; the DDL lives here so the staging schema is versioned with the
-- other migrations. The entity name is checked again here and quoted with %I.
CREATE FUNCTION ingestd_ensure_staging_table(entity text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    t text := 'stg_' || entity;
BEGIN
    IF entity !~ '^[a-z_][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid entity name "%"', entity USING ERRCODE = '22023';
    END IF;
    EXECUTE format($ddl$
        CREATE TABLE IF NOT EXISTS %I (
            id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            raw_data            jsonb       NOT NULL,
            external_id         text,         -- NULL when the record has no usable id
            content_hash        uuid        NOT NULL,  -- md5 of the minified record text
            fetched_at          timestamptz NOT NULL,
            run_id              text        NOT NULL,
            ledger_id           bigint      NOT NULL,  -- ingestd_spool_ledger.id: the file
            invalid_reason      text,         -- set by the stager: reject with this reason
            processed           boolean     NOT NULL DEFAULT false,
            processed_at        timestamptz,
            processing_attempts integer     NOT NULL DEFAULT 0,
            last_error          text,
            next_attempt_at     timestamptz NOT NULL DEFAULT now(),
            created_at          timestamptz NOT NULL DEFAULT now()
        )$ddl$, t);
    EXECUTE format('CREATE UNIQUE INDEX IF NOT EXISTS %I ON %I (content_hash)',
                   t || '_content_hash', t);
    -- The reconciler's queue: due, unprocessed rows in arrival order.
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (next_attempt_at, id) WHERE NOT processed',
                   t || '_due', t);
    -- The purge: processed rows by age. Partial, so loading pays nothing for it.
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (processed_at) WHERE processed',
                   t || '_processed_at', t);
END
$fn$;
