// Package central is the central PostgreSQL database of txswitch: its
// schema (versioned migrations) and the exporter that feeds it from the
// replicated outbox.
//
// PostgreSQL is the system of record for finance, reporting and support, fed
// asynchronously: payments never wait for it (DESIGN "degraded modes").
// The Exporter runs on the Raft leader, reads outbox events after the
// Raft-replicated export watermark, writes each batch to PostgreSQL in one
// transaction with idempotent upserts, and only then advances the watermark.
// That ordering plus the idempotent writes give invariant 5 (exactly once
// into PostgreSQL); see Exporter for the argument. When the database is down
// or slow, a circuit breaker opens, the exporter backs off, the outbox grows,
// and Stats / the txswitch_export_* metrics show the lag.
//
// Migrate applies the embedded migrations (migrations/NNNN_name.sql) one
// node at a time under a PostgreSQL advisory lock; see README.md for the
// rules every future migration must follow (expand → backfill → contract).
//
// This package imports only the domain package (for OutboxEvent and the
// resource types); it knows nothing of Raft or providers.
package central
