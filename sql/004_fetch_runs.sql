-- Completed fetch runs, from the run_end markers in the spool. A full run's deletions may be
-- applied only once its marker is here and every page it counts has been staged.
CREATE TABLE ingestd_fetch_runs (
    entity       text        NOT NULL,
    run_id       text        NOT NULL,
    source       text,
    mode         text        NOT NULL,
    pages        bigint      NOT NULL,
    records      bigint      NOT NULL,
    completed_at timestamptz NOT NULL,  -- fetched_at of the marker
    staged_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, run_id)
);
