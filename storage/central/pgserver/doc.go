// Package pgserver runs a private PostgreSQL server as a child process: the
// demo's central database and the tests' (through pgtest).
//
// Binaries come from `pg_config --bindir` (or Debian's
// /usr/lib/postgresql/*/bin when pg_config belongs to libpq-dev alone). The
// server listens on loopback only, trusts local connections (user
// postgres, no password) and keeps everything under one directory: data/,
// sock/ and postgres.log. Starting again on an existing directory reuses
// its data (no initdb), so a demo restarted on the same --data-dir finds its
// rows again.
//
// initdb and postgres refuse to run as root: when the caller is root, the
// server runs as the `postgres` user (set as the child's credentials, not
// via su, so that Kill reaches the postmaster and not a wrapper). That user
// must be able to reach Dir: its parent directories need the x bit for
// others.
package pgserver
