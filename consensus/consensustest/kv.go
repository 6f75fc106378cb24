package consensustest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"sync"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Put is the only command: set Key to Value. ID names the command so tests
// can check it was applied exactly once.
type Put struct {
	ID    string `json:"id"`
	Key   string `json:"k"`
	Value string `json:"v"`
}

// Encode returns the command's bytes for Propose.
func (p Put) Encode() []byte {
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("encode put: %v", err)) // strings only: cannot fail
	}
	return b
}

// Result is what Apply returns for a Put: which command it was, where it
// landed, and the register's previous value.
type Result struct {
	ID    string
	Index uint64
	Prev  string
}

// KV is an in-memory txswitch.StateMachine (and consensus.StateSyncer;
// wrap it in ImageOnly to hide that). Apply is atomic (all under one
// lock), so a node "crashed" and restarted on the same KV behaves like one
// restarted on a durable store.
type KV struct {
	mu       sync.Mutex
	applied  uint64
	data     map[string]string
	counts   map[string]int
	failWith error
	restores int
}

var _ txswitch.StateMachine = (*KV)(nil)

// NewKV returns an empty state machine.
func NewKV() *KV {
	return &KV{data: map[string]string{}, counts: map[string]int{}}
}

// FailWith makes later Apply calls fail with err (nil heals).
func (kv *KV) FailWith(err error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.failWith = err
}

// Apply implements txswitch.StateMachine.
func (kv *KV) Apply(cmds []txswitch.Command) ([]any, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if kv.failWith != nil {
		return nil, kv.failWith
	}
	// Decode everything first so a bad command changes nothing.
	puts := make([]*Put, len(cmds))
	for i, c := range cmds {
		if c.Index <= kv.applied {
			return nil, fmt.Errorf("command %d already applied (applied %d)", c.Index, kv.applied)
		}
		if len(c.Data) == 0 {
			continue
		}
		var p Put
		if err := json.Unmarshal(c.Data, &p); err != nil {
			return nil, fmt.Errorf("command %d: %w", c.Index, err)
		}
		puts[i] = &p
	}
	res := make([]any, len(cmds))
	for i, p := range puts {
		if p != nil {
			res[i] = Result{ID: p.ID, Index: cmds[i].Index, Prev: kv.data[p.Key]}
			kv.data[p.Key] = p.Value
			kv.counts[p.ID]++
		}
		kv.applied = cmds[i].Index
	}
	return res, nil
}

// AppliedIndex implements txswitch.StateMachine.
func (kv *KV) AppliedIndex() uint64 {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.applied
}

type image struct {
	Applied uint64            `json:"applied"`
	Data    map[string]string `json:"data"`
	Counts  map[string]int    `json:"counts"`
}

// Snapshot implements txswitch.StateMachine.
func (kv *KV) Snapshot() (uint64, []byte, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	b, err := json.Marshal(image{Applied: kv.applied, Data: kv.data, Counts: kv.counts})
	if err != nil {
		return 0, nil, fmt.Errorf("snapshot kv: %w", err)
	}
	return kv.applied, b, nil
}

// SyncState implements consensus.StateSyncer: the KV is "durable" as soon
// as Apply returned (a node restarted on it sees everything).
func (kv *KV) SyncState() (uint64, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.applied, nil
}

// Restore implements txswitch.StateMachine.
func (kv *KV) Restore(index uint64, data []byte) error {
	var img image
	if err := json.Unmarshal(data, &img); err != nil {
		return fmt.Errorf("restore kv: %w", err)
	}
	if img.Applied != index {
		return fmt.Errorf("restore kv: image at %d, snapshot at %d", img.Applied, index)
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.applied = index
	kv.data = img.Data
	kv.counts = img.Counts
	if kv.data == nil {
		kv.data = map[string]string{}
	}
	if kv.counts == nil {
		kv.counts = map[string]int{}
	}
	kv.restores++
	return nil
}

// OpenImage implements consensus.ImageStreamer: the image is taken at once
// (the KV is in memory anyway) and written on demand.
func (kv *KV) OpenImage() (txswitch.StateImage, error) {
	index, data, err := kv.Snapshot()
	if err != nil {
		return nil, err
	}
	return BytesImage{At: index, Data: data}, nil
}

// RestoreImage implements consensus.ImageStreamer.
func (kv *KV) RestoreImage(index uint64, r io.Reader, size int64) error {
	data, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return fmt.Errorf("restore kv: read image: %w", err)
	}
	if int64(len(data)) != size {
		return fmt.Errorf("restore kv: image of %d bytes, %d announced", len(data), size)
	}
	return kv.Restore(index, data)
}

// BytesImage is a txswitch.StateImage over bytes already built.
type BytesImage struct {
	At   uint64
	Data []byte
}

// Index implements txswitch.StateImage.
func (b BytesImage) Index() uint64 { return b.At }

// WriteTo implements txswitch.StateImage.
func (b BytesImage) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(b.Data)
	return int64(n), err
}

// Close implements txswitch.StateImage.
func (b BytesImage) Close() error { return nil }

// Get reads a register (a local read: call Log.ReadBarrier first for a
// linearizable one).
func (kv *KV) Get(key string) string {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.data[key]
}

// Count reports how many times the command id was applied.
func (kv *KV) Count(id string) int {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.counts[id]
}

// Restores reports how many snapshots were restored.
func (kv *KV) Restores() int {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.restores
}

// State returns copies of the registers and the apply counts.
func (kv *KV) State() (applied uint64, data map[string]string, counts map[string]int) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.applied, maps.Clone(kv.data), maps.Clone(kv.counts)
}

// ImageOnly exposes only txswitch.StateMachine's methods of the machine it
// wraps, so consensus must build a full image for every snapshot.
type ImageOnly struct{ SM txswitch.StateMachine }

// Apply implements txswitch.StateMachine.
func (o ImageOnly) Apply(cmds []txswitch.Command) ([]any, error) { return o.SM.Apply(cmds) }

// AppliedIndex implements txswitch.StateMachine.
func (o ImageOnly) AppliedIndex() uint64 { return o.SM.AppliedIndex() }

// Snapshot implements txswitch.StateMachine.
func (o ImageOnly) Snapshot() (uint64, []byte, error) { return o.SM.Snapshot() }

// Restore implements txswitch.StateMachine.
func (o ImageOnly) Restore(index uint64, data []byte) error { return o.SM.Restore(index, data) }
