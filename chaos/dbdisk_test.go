package chaos

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/storage/central/pgtest"
	"github.com/txswitch/txswitch/storage/pebblestore"
)

// TestDiskInjectorModes: each mode fails (or delays) only what it claims,
// only on WAL files, and a journal written through it fails with
// ErrFailed naming the cause.
func TestDiskInjectorModes(t *testing.T) {
	cases := []struct {
		mode DiskMode
		want string // in the journal's error; "" for no failure
	}{
		{DiskWriteError, "input/output error"},
		{DiskSyncError, "input/output error"},
		{DiskFull, "no space left on device"},
		{DiskSlowSync, ""},
	}
	for _, tc := range cases {
		t.Run(tc.mode.String(), func(t *testing.T) {
			disks := NewDisks()
			db, err := pebblestore.Open("data", pebblestore.Options{FS: disks.FS(0), CacheSize: 1 << 20, MemTableSize: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.SetNodeID(1); err != nil {
				t.Fatal(err)
			}
			inj := disks.Injector(0)
			inj.Set(tc.mode, 20*time.Millisecond)
			start := time.Now()
			err = db.LogStore(1).Save(nil, nil, nil, true)
			if err == nil {
				// An empty Save may not touch the WAL: force a synced write.
				err = db.SetNodeID(1)
			}
			b := db.StateStore(1).NewBatch()
			_ = b.Set([]byte("k"), []byte("v"))
			if cerr := b.Commit(1); err == nil {
				err = cerr
			}
			b.Close()
			if err == nil {
				_, _, err = db.StateStore(1).SnapshotState()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("slow mode failed a write: %v", err)
			case tc.want == "" && time.Since(start) < 20*time.Millisecond:
				t.Fatalf("slow mode took only %v", time.Since(start))
			case tc.want != "" && (!errors.Is(err, pebblestore.ErrFailed) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want ErrFailed naming %q", err, tc.want)
			}
			if inj.Hits() == 0 {
				t.Fatal("the injector counted no hit")
			}
			inj.Set(DiskOK, 0)
			_ = db.Close()
			// A crash keeps what was synced: the node id bound before the fault.
			if err := disks.crash(0); err != nil {
				t.Fatal(err)
			}
			db2, err := pebblestore.Open("data", pebblestore.Options{FS: disks.FS(0), CacheSize: 1 << 20, MemTableSize: 1 << 20})
			if err != nil {
				t.Fatalf("reopen on the synced data: %v", err)
			}
			defer db2.Close()
			if id, ok, err := db2.NodeID(); err != nil || !ok || id != 1 {
				t.Fatalf("node id after the crash: %d %v %v", id, ok, err)
			}
			if disks.Injector(0).Mode() != DiskOK {
				t.Fatal("the new disk starts with a fault on")
			}
		})
	}
}

// TestDatabaseFaults drives each central database fault against a real
// PostgreSQL of the test's own: each must make the probe fail (or be
// slow) while on, and leave the database answering after Undo.
func TestDatabaseFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	srv := pgtest.NewServer(t)
	db, err := NewDatabase(srv.Server, srv.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	faults := []Fault{
		NewDBDown(db, DBKill), NewDBDown(db, DBStop), NewDBDown(db, DBUnreachable),
		DBLatency(db, 300*time.Millisecond), DBReset(db), DBStall(db), NewDBFlap(db, 200*time.Millisecond, 200*time.Millisecond),
	}
	for _, f := range faults {
		t.Run(f.Kind(), func(t *testing.T) {
			if err := f.Inject(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			if err := f.Undo(ctx); err != nil {
				t.Fatal(err)
			}
			if injected, hit, why := Summary(f.Fired()); !injected || !hit {
				t.Fatalf("injected=%v hit=%v: %s (%v)", injected, hit, why, f.Fired())
			}
			if _, err := db.Probe(ctx, 5*time.Second); err != nil {
				t.Fatalf("database not answering after undo: %v", err)
			}
		})
	}
	// Without a server of its own, a kill refuses to run.
	shared := &Database{Proxy: db.Proxy, URL: db.URL, ProxyURL: db.ProxyURL}
	if err := NewDBDown(shared, DBKill).Inject(ctx); err == nil {
		t.Fatal("killed a server it does not own")
	}
}
