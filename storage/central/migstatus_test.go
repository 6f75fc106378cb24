package central

import (
	"context"
	"testing"

	"github.com/txswitch/txswitch/storage/central/pgtest"
)

// TestMigrationStatus reads the schema's state without changing it: all
// pending on a new database, all applied after Migrate, a version a newer
// release applied shown as not known here, and an edited applied
// migration flagged.
func TestMigrationStatus(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, pgtest.Start(t))
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	st, err := MigrationStatus(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != len(ms) {
		t.Fatalf("status of a new database lists %d, want %d", len(st), len(ms))
	}
	for _, s := range st {
		if s.Applied != nil || !s.Known {
			t.Fatalf("new database: %+v", s)
		}
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Fatalf("status created schema_migrations (%v, %v)", exists, err)
	}

	if _, err := Migrate(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'from_the_future', 'x')"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = $1", ms[0].Version); err != nil {
		t.Fatal(err)
	}
	st, err = MigrationStatus(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != len(ms)+1 {
		t.Fatalf("status lists %d, want %d", len(st), len(ms)+1)
	}
	for i, s := range st {
		switch {
		case s.Version == 9999:
			if s.Known || s.Applied == nil || i != len(st)-1 {
				t.Fatalf("newer release's migration: %+v at %d", s, i)
			}
		case s.Version == ms[0].Version:
			if s.ChecksumOK || s.Applied == nil {
				t.Fatalf("edited migration: %+v", s)
			}
		default:
			if !s.Known || !s.ChecksumOK || s.Applied == nil {
				t.Fatalf("applied migration: %+v", s)
			}
		}
	}
}
