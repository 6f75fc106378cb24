-- 0006: exported_event_log holds each exported event once, also across a
-- rolling upgrade.
--
-- An exporter of the release before 0004 records events in exported_events
-- and does not raise export_progress. If it commits a batch and loses
-- leadership before the Raft watermark moves past it, the next (new)
-- exporter exports from the watermark again and records a range that
-- overlaps those rows; the UNION ALL of 0004 then listed those events
-- twice. The resource rows were never doubled (upserts keep the newest
-- event); only the ledger was.
--
-- The view now leaves out an exported_events row that a range covers.
-- Ranges tile without overlap, so the one that can cover seq is the one
-- with the greatest first_seq <= seq: one backward step on the primary key
-- per row. Replacing a view with the same columns takes its lock for an
-- instant; exporters never read it.

CREATE OR REPLACE VIEW exported_event_log AS
    SELECT e.seq, e.event_id FROM exported_events e
    WHERE NOT EXISTS (
        SELECT 1 FROM (
            SELECT r.last_seq FROM exported_ranges r
            WHERE r.first_seq <= e.seq
            ORDER BY r.first_seq DESC
            LIMIT 1
        ) covering
        WHERE covering.last_seq >= e.seq
    )
    UNION ALL
    SELECT s.seq, 'evt_' || s.seq AS event_id
    FROM exported_ranges r, generate_series(r.first_seq, r.last_seq) AS s(seq);
