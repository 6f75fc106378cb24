package txswitch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Machine is the payment domain's replicated state machine over a Store.
// It is deterministic: Apply reads only the commands and the store, never a
// clock, randomness or map iteration order, so every node that applies the
// same log holds byte-identical state.
type Machine struct {
	store Store

	// applyMu serialises Apply, Snapshot and Restore (consensus calls them
	// from one goroutine; tests and the in-memory log may not).
	applyMu sync.Mutex
	// records caches decoded committed records across Apply calls
	// (rcache.go); guarded by applyMu.
	records *recordCache
	// buf is apply's scratch space (rcache.go); guarded by applyMu.
	buf scratch
	// filter knows which cached-table keys are certainly absent from the
	// store (keyfilter.go); guarded by applyMu.
	filter atomic.Pointer[keyFilter]
	// outboxSeq is the committed m/outbox_seq when seqKnown (guarded by
	// applyMu; forgotten on Restore and on a failed Apply).
	outboxSeq uint64
	seqKnown  bool

	// binary is the cluster versions this node's binary runs.
	binary VersionRange

	// sabotage is off except in mutant scenarios (sabotage.go).
	sabotage Sabotage

	mu             sync.RWMutex // guards cfg, onConfig and clusterVersion
	cfg            *RoutingConfig
	onConfig       func(RoutingConfig)
	clusterVersion int
}

var _ StateMachine = (*Machine)(nil)

// ApplyResult is what Apply returns for one command (the value Log.Propose
// hands back to the proposer).
type ApplyResult struct {
	// Reply is the finished HTTP reply when the command completed a request.
	Reply Reply
	// Err is a domain rejection: the command changed nothing.
	Err *Error
	// Replayed: an idempotency record answered; nothing was executed.
	Replayed bool
	// Late: a result for an attempt or operation that is no longer open; it
	// was recorded on the timeline and changed nothing else.
	Late bool
	// Open is the provider call the proposer must now make (an intent was
	// applied). Nil when no call is due.
	Open *OpenCall
}

// OpenCall is a provider call an applied intent allows.
type OpenCall struct {
	Kind      string // payment, capture, refund, cancel
	PaymentID string
	OpID      string // capture/refund id; "" for payments
	Attempt   int
	Provider  string
	Key       string // provider idempotency key
	// At is the time of the command that opened the call: the call may
	// start only within the provider's timeout after it (Svc.callOpen).
	At time.Time

	// request is the provider request apply prepared from the state it
	// just wrote, and candidates the payment's routing candidates, so the
	// proposer need not read the records back (nil when not prepared).
	request    *ProviderRequest
	candidates []RouteCandidate
}

// paymentRequest is the authorization request for p's open attempt.
func paymentRequest(p *paymentRec, key string) *ProviderRequest {
	total := p.Amount
	if p.Surcharge != nil {
		total.Value += p.Surcharge.Value
	}
	return &ProviderRequest{
		IdempotencyKey: key, Op: OpAuthorize, PaymentID: p.ID, OrderID: p.OrderID, MerchantID: p.MerchantID,
		Method: p.Method, Amount: total, Country: p.Country, Capture: p.CaptureMode == CaptureAutomatic, PaymentData: p.PaymentData,
	}
}

// opRequest is the provider request of the capture, refund or cancel d.
func opRequest(kind string, d *inDoubtRec, p *paymentRec) ProviderRequest {
	op := map[string]ProviderOp{opCapture: OpCapture, opRefund: OpRefund, opCancel: OpCancel}[kind]
	return ProviderRequest{IdempotencyKey: d.Key, Op: op, PaymentID: p.ID, OrderID: p.OrderID, MerchantID: p.MerchantID,
		Method: p.Method, Amount: d.Amount, Country: p.Country, ProviderRef: p.ProviderRef}
}

// NewMachine opens a machine over store, loading the cached configuration.
func NewMachine(store Store) (*Machine, error) { return NewMachineFor(store, BinaryVersions) }

// NewMachineFor is NewMachine for a binary that runs the cluster versions
// binary (tests play old and new binaries side by side with it). It fails
// when the store is at a cluster version outside binary.
func NewMachineFor(store Store, binary VersionRange) (*Machine, error) {
	if !binary.valid() {
		return nil, fmt.Errorf("machine: bad version range %+v", binary)
	}
	m := &Machine{store: store, records: newRecordCache(recordCacheGen), binary: binary}
	m.filter.Store(newKeyFilter())
	if err := m.reloadCaches(); err != nil {
		return nil, err
	}
	return m, nil
}

// OnConfig registers fn to be called (outside determinism, after commit)
// with each newly applied routing configuration, and once now with the
// current one if any. Used to reconfigure providers.
func (m *Machine) OnConfig(fn func(RoutingConfig)) {
	m.mu.Lock()
	m.onConfig = fn
	cfg := m.cfg
	m.mu.Unlock()
	if fn != nil && cfg != nil {
		fn(*cfg)
	}
}

// Config returns the applied routing configuration (false before any).
// The returned value must not be modified.
func (m *Machine) Config() (*RoutingConfig, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cfg, m.cfg != nil
}

// AppliedIndex is the store's durable applied index (0 if unreadable; the
// next Apply would surface the store error).
func (m *Machine) AppliedIndex() uint64 {
	i, err := m.store.AppliedIndex()
	if err != nil {
		return 0
	}
	return i
}

// Apply applies cmds in order in one batch committed with the last index.
func (m *Machine) Apply(cmds []Command) ([]any, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	filter := m.filter.Load()
	if err := filter.advance(m.store); err != nil {
		m.forgetCaches()
		return nil, fmt.Errorf("apply entries %d..%d: %w", cmds[0].Index, cmds[len(cmds)-1].Index, err)
	}
	b := m.store.NewBatch()
	defer b.Close()
	results := make([]any, len(cmds))
	var newCfg *RoutingConfig
	newVersion := 0
	defer m.buf.trim()
	bs := &batchState{committed: m.records, filter: filter, buf: &m.buf, written: make(map[string]any), outboxSeq: m.outboxSeq, seqLoaded: m.seqKnown}
	loaded := make(map[string]any)
	for i, c := range cmds {
		if len(c.Data) == 0 {
			continue
		}
		clear(loaded)
		ac := &applyCtx{b: b, bs: bs, loaded: loaded, binary: m.binary}
		res, err := ac.apply(c.Data)
		if err == nil && m.sabotage.applyTwice.Load() {
			// FlawApplyTwice: the entry again, into the same batch; the
			// proposer is answered by the first application.
			clear(loaded)
			again := &applyCtx{b: b, bs: bs, loaded: loaded, binary: m.binary}
			_, err = again.apply(c.Data)
			m.sabotage.firedApply.Add(1)
		}
		if err != nil {
			m.forgetCaches() // the node stops; leave nothing doubtful behind
			return nil, fmt.Errorf("apply entry %d: %w", c.Index, err)
		}
		results[i] = res
		if ac.newConfig != nil {
			newCfg = ac.newConfig
		}
		if ac.newClusterVersion != 0 {
			newVersion = ac.newClusterVersion
		}
	}
	if bs.seqDirty {
		if err := b.Set([]byte(keyOutboxSeq), encodeUint64(bs.outboxSeq)); err != nil {
			m.forgetCaches()
			return nil, fmt.Errorf("set outbox seq: %w", err)
		}
	}
	if err := b.Commit(cmds[len(cmds)-1].Index); err != nil {
		// The store may or may not hold the batch: forget everything cached.
		m.forgetCaches()
		return nil, fmt.Errorf("commit entries %d..%d: %w", cmds[0].Index, cmds[len(cmds)-1].Index, err)
	}
	bs.promote()
	m.outboxSeq, m.seqKnown = bs.outboxSeq, bs.seqLoaded
	if newCfg != nil {
		m.setConfig(newCfg)
	}
	if newVersion != 0 {
		m.mu.Lock()
		m.clusterVersion = newVersion
		m.mu.Unlock()
	}
	return results, nil
}

// Snapshot returns a consistent image of the state at the applied index.
func (m *Machine) Snapshot() (uint64, []byte, error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	idx, data, err := m.store.SnapshotState()
	if err != nil {
		return 0, nil, fmt.Errorf("snapshot state: %w", err)
	}
	return idx, data, nil
}

// OpenImage pins the state for a streamed snapshot image (the streamed
// form of Snapshot, see Store.OpenImage). It runs beside Apply without
// applyMu, as SyncState does: the store's view is atomic with each applied
// batch, and holding Apply for the WAL sync OpenImage makes would stall the
// Ready loop.
func (m *Machine) OpenImage() (StateImage, error) {
	im, err := m.store.OpenImage()
	if err != nil {
		return nil, fmt.Errorf("open state image: %w", err)
	}
	return im, nil
}

// RestoreImage replaces the state with a streamed snapshot image of size
// bytes and reloads caches (the streamed form of Restore).
func (m *Machine) RestoreImage(index uint64, r io.Reader, size int64) error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.forgetCaches()
	if err := m.store.RestoreImage(index, r, size); err != nil {
		return fmt.Errorf("restore state image at %d: %w", index, err)
	}
	return m.reloadCaches()
}

// Restore replaces the state with a snapshot image and reloads caches.
func (m *Machine) Restore(index uint64, data []byte) error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.forgetCaches()
	if err := m.store.RestoreState(index, data); err != nil {
		return fmt.Errorf("restore state at %d: %w", index, err)
	}
	return m.reloadCaches()
}

// keyMayExist is false when key, of a cached table (o/, p/, d/, i/), is
// certainly not in the store: it was neither in it when the key filter's
// scan passed nor written by apply since (keyfilter.go). Safe to call
// concurrently with Apply; "true" means read the store.
func (m *Machine) keyMayExist(key []byte) bool {
	return !m.filter.Load().absent(key)
}

// forgetCaches drops what Apply caches across calls (applyMu held).
func (m *Machine) forgetCaches() {
	m.records.clear()
	m.filter.Store(newKeyFilter())
	m.outboxSeq, m.seqKnown = 0, false
}

func (m *Machine) reloadCaches() error {
	if err := m.loadClusterVersion(); err != nil {
		return err
	}
	raw, err := m.store.Get([]byte(keyConfig))
	if errors.Is(err, ErrNotFound) {
		m.mu.Lock()
		m.cfg = nil
		m.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	var cfg RoutingConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("decode stored config: %w", err)
	}
	m.setConfig(&cfg)
	return nil
}

func (m *Machine) setConfig(cfg *RoutingConfig) {
	m.mu.Lock()
	m.cfg = cfg
	fn := m.onConfig
	m.mu.Unlock()
	if fn != nil {
		fn(*cfg)
	}
}
