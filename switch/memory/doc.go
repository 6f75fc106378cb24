// Package memory holds in-memory implementations of the txswitch boundaries
// — Store, Log, Provider and Providers — for fast, deterministic tests of the
// payment domain. Nothing here is durable or distributed.
package memory
