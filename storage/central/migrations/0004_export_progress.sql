-- 0004: export bookkeeping by a watermark row instead of one row per event.
--
-- exported_events cost every outbox event a heap row and two unique index
-- entries (event_id, seq): about as much WAL as the resource rows it
-- accounted for. From this release the exporter keeps instead
--   * export_progress: ONE row, last_seq = every event up to it is applied
--     here. Each batch transaction locks it first (SELECT ... FOR UPDATE, so
--     two exporters during a leader change take turns) and raises it in the
--     same transaction as the batch's rows;
--   * exported_ranges: one row per batch transaction, the seqs that
--     transaction newly applied (last_seq of the progress row before it,
--     exclusive, up to the batch's last event). Ranges never overlap and
--     tile 1..last_seq: the per-event ledger the checks read, at one row
--     per batch.
-- exported_events is kept and no longer written by this release (an
-- exporter of the previous release, leader during a rolling upgrade, still
-- writes it); exported_event_log reads both ledgers as one. A later release
-- may drop exported_events once no node of the previous release remains.
--
-- Only new objects and a small read of exported_events (its max(seq) comes
-- from the seq index): nothing here takes a lock an exporter waits on.

CREATE TABLE IF NOT EXISTS export_progress (
    id         int PRIMARY KEY CHECK (id = 1),
    last_seq   bigint NOT NULL CHECK (last_seq >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events the previous release recorded are applied; a new exporter starts
-- above them. (An old exporter may still commit more after this snapshot;
-- the Raft-replicated watermark covers those: see the Exporter doc.)
INSERT INTO export_progress (id, last_seq)
SELECT 1, coalesce(max(seq), 0) FROM exported_events
ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS exported_ranges (
    first_seq  bigint PRIMARY KEY,
    last_seq   bigint NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    CHECK (first_seq >= 1 AND last_seq >= first_seq)
);

-- Every exported event, one row each: what exported_events alone used to
-- be. Event ids are the switch's stable "evt_<seq>".
CREATE OR REPLACE VIEW exported_event_log AS
    SELECT seq, event_id FROM exported_events
    UNION ALL
    SELECT s.seq, 'evt_' || s.seq AS event_id
    FROM exported_ranges r, generate_series(r.first_seq, r.last_seq) AS s(seq);
