-- txswitch:no-transaction
--
-- 0003: money adds up (DESIGN invariant 3), enforced by the database too.
--
-- The online pattern for a constraint on a big table: ADD ... NOT VALID takes
-- only a brief lock and checks new writes from then on; VALIDATE CONSTRAINT
-- then scans the existing rows under SHARE UPDATE EXCLUSIVE, which does not
-- block the exporter's inserts and updates. The two steps must be separate
-- transactions (hence no-transaction: each statement commits on its own),
-- or the ADD's ACCESS EXCLUSIVE lock would be held through the whole scan.
--
-- The checks are the part of the domain's own (switch/apply.go
-- checkInvariants) visible in these rows: a cancelled payment keeps what it captured while its remaining
-- authorization is voided (authorized drops to 0), and an order's totals
-- are sums over its payments, so "captured <= authorized" is only checked
-- per payment and not for cancelled ones.
--
-- A row that violates these would stop the export (the batch fails and is
-- retried, LastError says why) rather than store impossible money.

ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_money_ck;
ALTER TABLE orders ADD CONSTRAINT orders_money_ck
    CHECK (refunded_minor >= 0 AND refunded_minor <= captured_minor) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_money_ck;

ALTER TABLE payments DROP CONSTRAINT IF EXISTS payments_money_ck;
ALTER TABLE payments ADD CONSTRAINT payments_money_ck
    CHECK (refunded_minor >= 0 AND refunded_minor <= captured_minor
           AND (captured_minor <= authorized_minor OR status = 'cancelled')) NOT VALID;
ALTER TABLE payments VALIDATE CONSTRAINT payments_money_ck;
