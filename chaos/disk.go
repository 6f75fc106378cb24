package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/txswitch/txswitch/storage/pebblestore"
)

// Disk faults act under one node's Pebble through pebble's vfs/errorfs.
// Every node of a cluster built with Disks runs on a crashable in-memory
// disk (vfs.NewCrashableMem) wrapped in a DiskInjector that does nothing
// until a fault switches it on.
//
// Faults touch the write-ahead log only (files ending in .log): that is
// where every raft append and state machine commit goes first, and the
// journal's WAL guard turns a WAL failure into ErrFailed for the next
// commit and the raft loop into a stop that says why. A failure in
// pebble's background work (flushes, compactions, the MANIFEST) calls its
// Fatalf outside any commit and crashes the process: by design in
// production (crash-stop), but in this tier the process holds every node,
// so those files are left alone.

// DiskMode is what a DiskInjector does to WAL operations.
type DiskMode int32

// Disk modes.
const (
	DiskOK         DiskMode = iota
	DiskWriteError          // WAL writes fail with EIO
	DiskSyncError           // WAL fsyncs fail with EIO
	DiskFull                // WAL writes fail with ENOSPC
	DiskSlowSync            // WAL fsyncs take Latency longer
)

var diskModeNames = map[DiskMode]string{DiskOK: "ok", DiskWriteError: "write error (EIO)",
	DiskSyncError: "fsync error (EIO)", DiskFull: "disk full (ENOSPC)", DiskSlowSync: "slow fsync"}

func (m DiskMode) String() string { return diskModeNames[m] }

// DiskInjector is an errorfs.Injector switched at run time.
type DiskInjector struct {
	mode    atomic.Int32
	latency atomic.Int64 // ns, for DiskSlowSync
	hits    atomic.Uint64
}

var _ errorfs.Injector = (*DiskInjector)(nil)

// Set switches the injector to mode (latency applies to DiskSlowSync).
func (d *DiskInjector) Set(mode DiskMode, latency time.Duration) {
	d.latency.Store(int64(latency))
	d.mode.Store(int32(mode))
}

// Mode is the current mode.
func (d *DiskInjector) Mode() DiskMode { return DiskMode(d.mode.Load()) }

// Hits counts the operations the injector failed or delayed.
func (d *DiskInjector) Hits() uint64 { return d.hits.Load() }

func (d *DiskInjector) String() string { return "switchable WAL fault: " + d.Mode().String() }

// MaybeError implements errorfs.Injector.
func (d *DiskInjector) MaybeError(op errorfs.Op) error {
	mode := d.Mode()
	if mode == DiskOK || !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	write := op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileWriteAt
	sync := op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo
	switch {
	case mode == DiskWriteError && write:
		d.hits.Add(1)
		return &os.PathError{Op: "write", Path: op.Path, Err: syscall.EIO}
	case mode == DiskFull && write:
		d.hits.Add(1)
		return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
	case mode == DiskSyncError && sync:
		d.hits.Add(1)
		return &os.PathError{Op: "fsync", Path: op.Path, Err: syscall.EIO}
	case mode == DiskSlowSync && sync:
		d.hits.Add(1)
		time.Sleep(time.Duration(d.latency.Load()))
	}
	return nil
}

// Disks gives every node slot of a local cluster its own crashable
// in-memory disk under a DiskInjector: pass FS as cluster.LocalConfig.FS.
type Disks struct {
	mu    sync.Mutex
	slots map[int]*slotDisk
}

type slotDisk struct {
	mem *vfs.MemFS
	inj *DiskInjector
}

// NewDisks returns disks for a cluster (created on first use per slot).
func NewDisks() *Disks { return &Disks{slots: map[int]*slotDisk{}} }

// FS is slot's filesystem for its next start.
func (d *Disks) FS(slot int) vfs.FS {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.slots[slot]
	if !ok {
		s = &slotDisk{mem: vfs.NewCrashableMem(), inj: &DiskInjector{}}
		d.slots[slot] = s
	}
	return errorfs.Wrap(s.mem, s.inj)
}

// Injector is slot's injector (nil before the slot first started).
func (d *Disks) Injector(slot int) *DiskInjector {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.slots[slot]; ok {
		return s.inj
	}
	return nil
}

// crash replaces slot's disk by what survives a power cut: what was
// synced, nothing else. The node that ran on the old disk must be stopped
// first; its pebble (never closed after a failure) keeps the old copy.
func (d *Disks) crash(slot int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.slots[slot]
	if !ok {
		return fmt.Errorf("slot %d has no disk", slot)
	}
	d.slots[slot] = &slotDisk{mem: s.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}), inj: &DiskInjector{}}
	return nil
}

// DiskFault switches a fault on under one node's journal. Undo switches it
// off; after an error fault (the node's journal failed and its raft loop
// stopped) Undo also stops the node, drops what its disk did not sync and
// restarts it on the rest, as an operator restarts a node after replacing
// a disk controller.
//
// While the fault is on, it watches the node's /readyz and records the
// first refusal ("observed" event, the body as detail): under an error
// fault the node must say why it stopped taking writes; under a slow disk
// it must not refuse at all.
type DiskFault struct {
	record
	c       *Cluster
	disks   *Disks
	spec    string
	mode    DiskMode
	latency time.Duration

	slot      int
	inj       *DiskInjector
	before    uint64
	stopWatch chan struct{}
	watchDone chan struct{}
}

// Disk fault kinds by mode.
var diskKinds = map[DiskMode]string{DiskWriteError: "disk_write_error", DiskSyncError: "disk_sync_error",
	DiskFull: "disk_full", DiskSlowSync: "disk_slow_sync"}

// NewDiskFault returns a disk fault of mode on target (leader, follower,
// n1..nN), resolved at Inject. latency applies to DiskSlowSync.
func NewDiskFault(c *Cluster, disks *Disks, target string, mode DiskMode, latency time.Duration) *DiskFault {
	return &DiskFault{record: record{kind: diskKinds[mode], target: target}, c: c, disks: disks, spec: target,
		mode: mode, latency: latency, slot: -1}
}

// Inject resolves the target and switches its injector on.
func (f *DiskFault) Inject(context.Context) error {
	err := f.inject()
	f.add("inject", false, f.mode.String(), err)
	return err
}

func (f *DiskFault) inject() error {
	slot, n, err := f.c.runningSlot(f.spec)
	if err != nil {
		return err
	}
	inj := f.disks.Injector(slot)
	if inj == nil {
		return fmt.Errorf("node n%d does not run on a chaos disk (start the cluster with Disks.FS)", slot+1)
	}
	f.slot, f.inj = slot, inj
	f.setTarget("n" + strconv.Itoa(slot+1))
	f.before = inj.Hits()
	inj.Set(f.mode, f.latency)
	f.stopWatch, f.watchDone = make(chan struct{}), make(chan struct{})
	go f.watch("http://" + n.APIAddr() + "/readyz")
	return nil
}

func (f *DiskFault) failing() bool { return f.mode != DiskSlowSync }

// watch polls readiness until the node refuses, and records its answer.
func (f *DiskFault) watch(url string) {
	defer close(f.watchDone)
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-f.stopWatch:
			return
		case <-t.C:
		}
		resp, err := client.Get(url)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			f.add("observed", false, fmt.Sprintf("readyz %d: %s", resp.StatusCode, strings.TrimSpace(string(b))), nil)
			return
		}
	}
}

// Undo switches the injector off; after an error fault it restarts the
// node on what its disk had synced.
func (f *DiskFault) Undo(context.Context) error {
	if f.inj == nil {
		return nil
	}
	f.inj.Set(DiskOK, 0)
	hits := f.inj.Hits() - f.before
	if f.stopWatch != nil {
		close(f.stopWatch)
		<-f.watchDone
	}
	start := time.Now()
	err := f.restart()
	detail := ""
	if f.failing() && err == nil {
		detail = fmt.Sprintf("n%d restarted on its synced data (stop and restart took %v)", f.slot+1, time.Since(start).Round(time.Millisecond))
	}
	// Recorded once the node runs again (the crash drains the API for up
	// to 5 s): catching up is timed from here.
	f.add("undo", false, detail, err)
	f.add("effect", hits > 0, fmt.Sprintf("%d WAL operations hit (%s)", hits, f.mode), nil)
	f.inj = nil
	return err
}

func (f *DiskFault) restart() error {
	if !f.failing() {
		return nil
	}
	// A crash (raft stops before the API drains: a failing leader leads no
	// longer than it takes to stop), and it reports the journal's failure
	// (the reason it is restarted).
	if err := f.c.Local.CrashNode(f.slot); err != nil && !errors.Is(err, pebblestore.ErrFailed) {
		return fmt.Errorf("stop n%d: %w", f.slot+1, err)
	}
	if err := f.disks.crash(f.slot); err != nil {
		return err
	}
	if err := f.c.Local.RestartNode(f.slot); err != nil {
		return fmt.Errorf("restart n%d on its synced data: %w", f.slot+1, err)
	}
	return nil
}

// Slot is the resolved node slot (0-based; -1 before Inject).
func (f *DiskFault) Slot() int { return f.slot }
