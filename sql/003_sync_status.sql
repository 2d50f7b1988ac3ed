-- One row per run per stage and entity: the columns of the design notes' sync_status
-- (seeds/003), plus the stage, run and mode that a staged pipeline needs to tell runs apart.
CREATE TABLE sync_status (
    id                   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    sync_type            text        NOT NULL,  -- the entity, as in the design notes
    stage                text        NOT NULL CHECK (stage IN ('fetcher', 'stager', 'reconciler')),
    run_id               text,
    mode                 text        CHECK (mode IN ('incremental', 'full', 'repair')),
    started_at           timestamptz NOT NULL,
    completed_at         timestamptz,
    status               text        NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    records_fetched      integer     NOT NULL DEFAULT 0,
    records_processed    integer     NOT NULL DEFAULT 0,
    records_skipped      integer     NOT NULL DEFAULT 0,
    records_failed       integer     NOT NULL DEFAULT 0,
    error_rate           double precision CHECK (error_rate BETWEEN 0 AND 100),
    data_freshness_score double precision CHECK (data_freshness_score BETWEEN 0 AND 100),
    error_summary        jsonb       NOT NULL DEFAULT '{}',
    performance_metrics  jsonb       NOT NULL DEFAULT '{}',
    host                 text,
    pid                  integer,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_status_latest ON sync_status (sync_type, stage, started_at DESC);
CREATE INDEX sync_status_running ON sync_status (stage) WHERE status = 'running';
