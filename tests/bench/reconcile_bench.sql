-- Reconciler benchmark, side (b): the hand-written set-based reference for
-- tests/bench/reconcile_bench.sh. One transaction over every due row of stg_timeline_entries,
-- for the benchmark's table configuration (clients, users, pianos, timeline_entries):
--   1. a placeholder for every referenced id that does not exist yet, per referenced table,
--      parents first (SELECT DISTINCT ... ON CONFLICT DO NOTHING), with the same placeholder
--      values as the benchmark's configuration;
--   2. INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE ... WHERE the content changed, with the
--      same casts (raw_data #>> path) and bookkeeping columns as the reconciler;
--   3. UPDATE the staged rows: processed, processed_at, outcome = 'applied'.
-- It validates nothing and resolves no duplicate ids within the batch: the benchmark's staged
-- rows are valid and have distinct ids, and the script checks that the end state equals the
-- reconciler's.
\set ON_ERROR_STOP on
BEGIN;
SET LOCAL TIME ZONE 'UTC';

INSERT INTO clients (id, is_placeholder, first_name, last_name)
SELECT r.id, true, 'Unknown', '(' || r.id || ')'
FROM (SELECT DISTINCT raw_data #>> '{client,id}' AS id FROM stg_timeline_entries
      WHERE NOT processed) r
WHERE r.id IS NOT NULL
ON CONFLICT (id) DO NOTHING;

INSERT INTO users (id, is_placeholder, name)
SELECT r.id, true, 'Unknown technician (' || r.id || ')'
FROM (SELECT DISTINCT raw_data #>> '{user,id}' AS id FROM stg_timeline_entries
      WHERE NOT processed) r
WHERE r.id IS NOT NULL
ON CONFLICT (id) DO NOTHING;

INSERT INTO pianos (id, is_placeholder, serial)
SELECT r.id, true, '?'
FROM (SELECT DISTINCT raw_data #>> '{piano,id}' AS id FROM stg_timeline_entries
      WHERE NOT processed) r
WHERE r.id IS NOT NULL
ON CONFLICT (id) DO NOTHING;

INSERT INTO timeline_entries AS t (id, occurred_at, minutes, piano_id, user_id, client_id,
    raw_data, content_hash, source_updated_at, fetched_at, is_placeholder, version, synced_at)
SELECT s.external_id, (s.raw_data #>> '{occurredAt}')::timestamptz,
       (s.raw_data #>> '{minutes}')::integer, s.raw_data #>> '{piano,id}',
       s.raw_data #>> '{user,id}', s.raw_data #>> '{client,id}',
       s.raw_data, s.content_hash, (s.raw_data #>> '{updatedAt}')::timestamptz, s.fetched_at,
       false, 1, now()
FROM stg_timeline_entries s
WHERE NOT s.processed
ON CONFLICT (id) DO UPDATE SET
    occurred_at = EXCLUDED.occurred_at, minutes = EXCLUDED.minutes,
    piano_id = EXCLUDED.piano_id, user_id = EXCLUDED.user_id, client_id = EXCLUDED.client_id,
    raw_data = EXCLUDED.raw_data, content_hash = EXCLUDED.content_hash,
    source_updated_at = EXCLUDED.source_updated_at, fetched_at = EXCLUDED.fetched_at,
    version = t.version + 1, updated_at = now(), is_placeholder = false, deleted_at = NULL,
    synced_at = now()
WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash;

UPDATE stg_timeline_entries
SET processed = true, processed_at = now(), processing_attempts = processing_attempts + 1,
    last_error = NULL, outcome = 'applied'
WHERE NOT processed;

COMMIT;
