-- txswitch:no-transaction
--
-- 0002: the indexes readers need, built CONCURRENTLY so the exporter keeps
-- writing while they build. Each statement runs on its own (CONCURRENTLY
-- cannot run inside a transaction). A failed concurrent build leaves an
-- INVALID index behind; the DROP ... IF EXISTS before each CREATE makes a
-- retry of this migration clean that up instead of skipping it.

DROP INDEX CONCURRENTLY IF EXISTS orders_merchant_created_idx;
CREATE INDEX CONCURRENTLY orders_merchant_created_idx ON orders (merchant_id, created_at);

DROP INDEX CONCURRENTLY IF EXISTS orders_merchant_reference_idx;
CREATE INDEX CONCURRENTLY orders_merchant_reference_idx ON orders (merchant_id, reference);

DROP INDEX CONCURRENTLY IF EXISTS orders_status_updated_idx;
CREATE INDEX CONCURRENTLY orders_status_updated_idx ON orders (status, updated_at);

DROP INDEX CONCURRENTLY IF EXISTS payments_order_idx;
CREATE INDEX CONCURRENTLY payments_order_idx ON payments (order_id);

DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_created_idx;
CREATE INDEX CONCURRENTLY payments_merchant_created_idx ON payments (merchant_id, created_at);

DROP INDEX CONCURRENTLY IF EXISTS payments_status_updated_idx;
CREATE INDEX CONCURRENTLY payments_status_updated_idx ON payments (status, updated_at);

DROP INDEX CONCURRENTLY IF EXISTS payments_provider_created_idx;
CREATE INDEX CONCURRENTLY payments_provider_created_idx ON payments (provider, created_at);

DROP INDEX CONCURRENTLY IF EXISTS payments_provider_ref_idx;
CREATE INDEX CONCURRENTLY payments_provider_ref_idx ON payments (provider, provider_ref);

DROP INDEX CONCURRENTLY IF EXISTS captures_payment_idx;
CREATE INDEX CONCURRENTLY captures_payment_idx ON captures (payment_id);

DROP INDEX CONCURRENTLY IF EXISTS refunds_payment_idx;
CREATE INDEX CONCURRENTLY refunds_payment_idx ON refunds (payment_id);

DROP INDEX CONCURRENTLY IF EXISTS refunds_merchant_created_idx;
CREATE INDEX CONCURRENTLY refunds_merchant_created_idx ON refunds (merchant_id, created_at);

DROP INDEX CONCURRENTLY IF EXISTS timeline_events_payment_idx;
CREATE INDEX CONCURRENTLY timeline_events_payment_idx ON timeline_events (payment_id) WHERE payment_id IS NOT NULL;

DROP INDEX CONCURRENTLY IF EXISTS provider_attempts_provider_at_idx;
CREATE INDEX CONCURRENTLY provider_attempts_provider_at_idx ON provider_attempts (provider, at);
