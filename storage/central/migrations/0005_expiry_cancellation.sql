-- 0005: order expiry and payment cancellations reach the readers.
--
-- Support asks "which orders expired unpaid, and when" and "which voids are
-- still in doubt at the provider"; the switch has both since cluster
-- versions 2 and 3 (orders.expires_at, a payment's cancellation).
--
-- Expand only: nullable columns without a default are a catalog change
-- (no table rewrite), so the ACCESS EXCLUSIVE lock is held for an instant,
-- bounded by lock_timeout like every migration. Exporters of the previous
-- release do not name these columns and keep working; rows they write
-- leave them as they were until the next event of the row.

ALTER TABLE orders ADD COLUMN IF NOT EXISTS expires_at timestamptz;
ALTER TABLE payments ADD COLUMN IF NOT EXISTS cancellation_status text;
ALTER TABLE payments ADD COLUMN IF NOT EXISTS cancellation_failure_code text;
