// Package pgtest gives tests a real PostgreSQL database.
//
// Start(t) returns the URL of a fresh, empty database that is dropped when the
// test ends. When TXSWITCH_TEST_PG_URL is set, the database is created inside
// that server; otherwise a private PostgreSQL (package pgserver, binaries from
// `pg_config --bindir`) is started once per test binary (Shared) on a free loopback
// port, with fsync off because test data need not survive a power cut.
//
// Tests that take the database down (to exercise degraded mode) start their
// own Server with NewServer and use Kill (SIGKILL of the whole postmaster
// process group), Stop and Restart (same port, same data directory, so the
// URL stays valid).
//
// initdb and postgres refuse to run as root: when the test runs as root, the
// server runs as the `postgres` user (set as the child's credentials, not via
// su, so that Kill reaches the postmaster and not a wrapper).
//
// Without binaries and without a URL the test is skipped, except under
// CI=true, where it fails: CI must never silently skip the database tests.
package pgtest
