package pebblestore

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// fence holds a DB's first storage failure. Once set it is never cleared:
// the DB refuses every read and write (see ErrFailed).
type fence struct{ err atomic.Pointer[error] }

// fail records err as the failure unless one is already recorded, and
// returns the recorded one.
func (f *fence) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrFailed, err)
	f.err.CompareAndSwap(nil, &err)
	return f.failure()
}

func (f *fence) failure() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

// walGuard is the filesystem pebble runs on: the node's own, except that a
// failed write, fsync or creation of a WAL file never reaches pebble.
//
// Pebble survives a WAL error only in the commit that waits for it. Anywhere
// else it dies in a way no recover can catch: a memtable rotation closes
// the old WAL, the close reports the failure of an earlier unsynced write,
// and rotateWAL panics with its mutex released, so the unwinding unlocks it
// a second time ("fatal error: sync: unlock of unlocked mutex";
// cockroachdb/pebble#5601, #5225, #2300). A commit that queues onto a failed
// WAL panics with a plain error too. One node's disk fault would then kill
// the process, and in the in-process test tier every node in it.
//
// So the guard fences the DB inside the failing call, before it returns,
// and tells pebble the call succeeded. From then on it drops every WAL write
// and fsync and hands out a discard file for every new WAL: the disk keeps
// the WAL as it was at the failure, which is what a crash there would have
// left. DB.commit checks the fence after pebble returns, so every commit
// that could depend on a dropped write reports ErrFailed; nothing is
// acknowledged that is not durable. Pebble may still flush its memtables to
// tables afterwards (the tables are not WAL files): that makes whole
// batches durable that were reported failed, which a restart treats like
// any write that reached the disk before a crash.
type walGuard struct {
	vfs.FS
	fence *fence
	log   *zap.Logger
}

func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

// failed fences the DB with the error of op on name, logging the first one:
// the error goes no further (pebble is told the call succeeded), so this
// is the only place it is said.
func (g *walGuard) failed(op, name string, err error) {
	if g.fence.failure() == nil {
		g.log.Error("WAL failed; storage fenced, the node must stop and restart from disk",
			zap.String("op", op), zap.String("file", name), zap.Error(err))
	}
	g.fence.fail(fmt.Errorf("%s %s: %w", op, name, err))
}

func (g *walGuard) dropping() bool { return g.fence.failure() != nil }

// Unwrap implements vfs.FS. Without it the embedded FS's Unwrap would answer,
// skipping one layer: vfs.Root would then return the guard itself instead of
// the disk underneath.
func (g *walGuard) Unwrap() vfs.FS { return g.FS }

// Create implements vfs.FS.
func (g *walGuard) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if !isWAL(name) {
		return g.FS.Create(name, category)
	}
	return g.open("create", name, func() (vfs.File, error) { return g.FS.Create(name, category) })
}

// ReuseForWrite implements vfs.FS (pebble recycles old WAL files).
func (g *walGuard) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if !isWAL(newname) {
		return g.FS.ReuseForWrite(oldname, newname, category)
	}
	return g.open("reuse", newname, func() (vfs.File, error) { return g.FS.ReuseForWrite(oldname, newname, category) })
}

// OpenReadWrite implements vfs.FS.
func (g *walGuard) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	if !isWAL(name) {
		return g.FS.OpenReadWrite(name, category, opts...)
	}
	return g.open("open", name, func() (vfs.File, error) { return g.FS.OpenReadWrite(name, category, opts...) })
}

func (g *walGuard) open(op, name string, open func() (vfs.File, error)) (vfs.File, error) {
	if g.dropping() {
		return discardFile{name: name}, nil
	}
	f, err := open()
	if err != nil {
		g.failed(op, name, err)
		return discardFile{name: name}, nil
	}
	return &guardedFile{File: f, g: g, name: name}, nil
}

// guardedFile is a WAL file under a walGuard.
type guardedFile struct {
	vfs.File
	g    *walGuard
	name string
}

func (f *guardedFile) Write(p []byte) (int, error) {
	if f.g.dropping() {
		return len(p), nil
	}
	if _, err := f.File.Write(p); err != nil {
		f.g.failed("write", f.name, err)
	}
	return len(p), nil
}

func (f *guardedFile) WriteAt(p []byte, off int64) (int, error) {
	if f.g.dropping() {
		return len(p), nil
	}
	if _, err := f.File.WriteAt(p, off); err != nil {
		f.g.failed("write", f.name, err)
	}
	return len(p), nil
}

func (f *guardedFile) Preallocate(off, length int64) error {
	return f.guard("preallocate", func() error { return f.File.Preallocate(off, length) })
}

func (f *guardedFile) Sync() error { return f.guard("fsync", f.File.Sync) }

func (f *guardedFile) SyncData() error { return f.guard("fsync", f.File.SyncData) }

func (f *guardedFile) SyncTo(length int64) (bool, error) {
	if f.g.dropping() {
		return true, nil
	}
	full, err := f.File.SyncTo(length)
	if err != nil {
		f.g.failed("fsync", f.name, err)
		return true, nil
	}
	return full, nil
}

// Close always closes the file (its descriptor is released even after a
// failure); an error closing it is a failure like any other.
func (f *guardedFile) Close() error {
	dropping := f.g.dropping()
	if err := f.File.Close(); err != nil && !dropping {
		f.g.failed("close", f.name, err)
	}
	return nil
}

func (f *guardedFile) guard(op string, call func() error) error {
	if f.g.dropping() {
		return nil
	}
	if err := call(); err != nil {
		f.g.failed(op, f.name, err)
	}
	return nil
}

// discardFile is a WAL file created after the DB failed: it takes every
// write and keeps nothing, so the disk's last WAL stays the one that failed.
type discardFile struct{ name string }

func (discardFile) Close() error                           { return nil }
func (discardFile) Read([]byte) (int, error)               { return 0, io.EOF }
func (discardFile) ReadAt([]byte, int64) (int, error)      { return 0, io.EOF }
func (discardFile) Write(p []byte) (int, error)            { return len(p), nil }
func (discardFile) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
func (discardFile) Preallocate(int64, int64) error         { return nil }
func (f discardFile) Stat() (vfs.FileInfo, error)          { return discardInfo(f), nil }
func (discardFile) Sync() error                            { return nil }
func (discardFile) SyncTo(int64) (bool, error)             { return true, nil }
func (discardFile) SyncData() error                        { return nil }
func (discardFile) Prefetch(int64, int64) error            { return nil }
func (discardFile) Fd() uintptr                            { return vfs.InvalidFd }

// discardInfo describes a discardFile: empty, on no device.
type discardInfo struct{ name string }

func (f discardInfo) Name() string         { return f.name }
func (discardInfo) Size() int64            { return 0 }
func (discardInfo) Mode() os.FileMode      { return 0o644 }
func (discardInfo) ModTime() time.Time     { return time.Time{} }
func (discardInfo) IsDir() bool            { return false }
func (discardInfo) Sys() any               { return nil }
func (discardInfo) DeviceID() vfs.DeviceID { return vfs.DeviceID{} }
