-- sync_status becomes written (issue 5). Every stage upserts its rows by
-- (stage, sync_type, run_id); heartbeat_at is when the writer last touched the row, so a
-- row left 'running' by a process that died can be told from a live one. The fetcher's rows
-- arrive through the spool (kind run_summary) and are upserted by the stager; heartbeat_at
-- is the summary's write time, so an older summary never overwrites a newer one.
ALTER TABLE sync_status
    ALTER COLUMN run_id SET NOT NULL,
    ADD COLUMN heartbeat_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX sync_status_run ON sync_status (stage, sync_type, run_id);

-- Run summaries are spool files too: staged once, recorded in the ledger.
ALTER TABLE ingestd_spool_ledger
    DROP CONSTRAINT ingestd_spool_ledger_outcome_check,
    ADD CONSTRAINT ingestd_spool_ledger_outcome_check
        CHECK (outcome IN ('loaded', 'quarantined', 'run_end', 'run_summary'));

-- Dead rows are few and must be counted cheaply and often (the monitor, every poll).
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
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (id) WHERE outcome = ''dead''',
                   t || '_dead', t);
END
$fn$;

-- Freshness, defined once for the monitor and the stages' sync_status rows: the completion
-- time of the newest fetch run whose records are all through the pipeline, i.e. every page
-- it counts is staged and nothing fetched at or before its end still waits in stg_<entity>
-- (rows in retry count as waiting: they are not in production). NULL when no run qualifies.
CREATE FUNCTION ingestd_fresh_as_of(entity text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    oldest timestamptz;
    result timestamptz;
BEGIN
    IF entity !~ '^[a-z_][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid entity name "%"', entity USING ERRCODE = '22023';
    END IF;
    EXECUTE format('SELECT min(fetched_at) FROM %I WHERE NOT processed', 'stg_' || entity)
        INTO oldest;
    SELECT r.completed_at INTO result
      FROM ingestd_fetch_runs r
     WHERE r.entity = ingestd_fresh_as_of.entity
       AND (oldest IS NULL OR r.completed_at < oldest)
       AND (SELECT count(DISTINCT l.page) FROM ingestd_spool_ledger l
             WHERE l.entity = r.entity AND l.run_id = r.run_id AND l.outcome = 'loaded')
           >= r.pages
     ORDER BY r.completed_at DESC
     LIMIT 1;
    RETURN result;
END
$fn$;

-- 0-100: 100 while the data is at most two schedule periods old, then 100 * 2 * period / age
-- (halves each time the age doubles); 0 when never synced.
CREATE FUNCTION ingestd_freshness_score(age_seconds double precision,
                                        period_seconds double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN age_seconds IS NULL THEN 0
                WHEN age_seconds <= 2 * period_seconds THEN 100
                ELSE 100 * 2 * period_seconds / age_seconds END
$fn$;
