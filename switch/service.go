package txswitch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// ServiceConfig wires a Svc.
type ServiceConfig struct {
	Log       Log
	Store     Reader // the state machine's store (reads after ReadBarrier)
	Machine   *Machine
	Providers Providers
	Clock     Clock       // default SystemClock
	IDs       IDGenerator // default RandomIDs
	Logger    *zap.Logger // default nop
	// NotifyURL is where provider's asynchronous notifications go (nil: none).
	NotifyURL func(provider string) string

	// ResolveEvery is the in-doubt resolver's period (default 1 s).
	ResolveEvery time.Duration
	// ResolveMargin is added to a provider's timeout before an intent
	// counts as in doubt (default 2 s). A call may start only within the
	// provider's timeout after its intent (callOpen), so the margin covers
	// clock skew between leaders and the request's own flight time; what
	// a stalled process sends later still is refused by the provider's
	// fence on status inquiries (see Provider).
	ResolveMargin time.Duration
	// ResolveMaxBackoff caps the wait between inquiries of one intent
	// whose provider errs or says pending (default 1 min).
	ResolveMaxBackoff time.Duration
	// ResolvePassTimeout bounds one resolver pass (default
	// DefaultResolvePassTimeout): past it no inquiry starts and status
	// inquiries under way are abandoned (see ResolveInDoubt).
	ResolvePassTimeout time.Duration
	// ResolvePerProvider bounds the status inquiries a resolver pass has
	// out at one provider at a time (default DefaultResolvePerProvider).
	ResolvePerProvider int
	// IdempotencyRetention is how long idempotency records are kept
	// (default 24 h); HousekeepEvery how often expiry runs (default 1 min).
	IdempotencyRetention time.Duration
	HousekeepEvery       time.Duration
	// ProposeTimeout bounds the proposals made after a provider call, which
	// run detached from the client's context so an answer the provider gave
	// is recorded even if the client went away (default 10 s).
	ProposeTimeout time.Duration
}

// DefaultProviderTimeout bounds a provider call when the config gives none.
const DefaultProviderTimeout = 10 * time.Second

// Svc is the payment service: validation, routing and the provider calls
// on the leader; every state change goes through the Log.
type Svc struct {
	cfg    ServiceConfig
	log    Log
	store  Reader
	m      *Machine
	prov   Providers
	clock  Clock
	ids    IDGenerator
	logger *zap.Logger

	// configMu serializes PutConfig on this node, so that its checks
	// (version, open calls) judge the configuration its change replaces.
	configMu sync.Mutex

	mu sync.Mutex
	// inflight are provider keys this node is calling right now; the
	// resolver leaves them alone.
	inflight map[string]struct{}
	// backoff is the resolver's per-key retry schedule (leader-local).
	backoff  map[string]resolveBackoff
	lastTerm uint64
	// idemAfter is where the next idempotency expiry command scans from
	// (leader-local; nil: the oldest record): past records still in
	// progress, which expiry keeps. idemTerm is the term it was set in: a
	// node leading again starts from the oldest record.
	idemAfter []byte
	idemTerm  uint64
}

var _ Service = (*Svc)(nil)

// NewService builds a service; call Run for its housekeeping loops.
func NewService(cfg ServiceConfig) *Svc {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.IDs == nil {
		cfg.IDs = RandomIDs{}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.ResolveEvery <= 0 {
		cfg.ResolveEvery = time.Second
	}
	if cfg.ResolveMargin <= 0 {
		cfg.ResolveMargin = 2 * time.Second
	}
	if cfg.ResolveMaxBackoff <= 0 {
		cfg.ResolveMaxBackoff = time.Minute
	}
	if cfg.ResolvePassTimeout <= 0 {
		cfg.ResolvePassTimeout = DefaultResolvePassTimeout
	}
	if cfg.ResolvePerProvider <= 0 {
		cfg.ResolvePerProvider = DefaultResolvePerProvider
	}
	if cfg.IdempotencyRetention <= 0 {
		cfg.IdempotencyRetention = 24 * time.Hour
	}
	if cfg.HousekeepEvery <= 0 {
		cfg.HousekeepEvery = time.Minute
	}
	if cfg.ProposeTimeout <= 0 {
		cfg.ProposeTimeout = 10 * time.Second
	}
	return &Svc{
		cfg: cfg, log: cfg.Log, store: cfg.Store, m: cfg.Machine, prov: cfg.Providers,
		clock: cfg.Clock, ids: cfg.IDs, logger: cfg.Logger,
		inflight: map[string]struct{}{}, backoff: map[string]resolveBackoff{},
	}
}

// LeadershipPoll is how often Run looks for a leadership change, so that
// a new leader resolves in-doubt intents without waiting a full period.
const LeadershipPoll = 100 * time.Millisecond

// Run runs the leader's housekeeping until ctx ends, each task in its own
// loop so that a slow one never holds up the others (a resolver pass
// waiting on a provider that hangs delayed order and idempotency expiry
// and the reaction to a leader change by minutes):
//   - the in-doubt resolver, every ResolveEvery and at once when this node
//     becomes leader (a pass is bounded by ResolvePassTimeout and ends when
//     this node loses the lead);
//   - order expiry, every ResolveEvery;
//   - idempotency record and notification marker expiry, every
//     HousekeepEvery.
//
// Every task acts only while this node leads. Run returns once all loops
// have stopped.
func (s *Svc) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		s.resolveLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		s.every(ctx, s.cfg.ResolveEvery, func() {
			if _, err := s.ExpireOrders(ctx); err != nil {
				s.logger.Warn("order expiry pass failed", zap.Error(err))
			}
		})
	}()
	go func() {
		defer wg.Done()
		s.every(ctx, s.cfg.HousekeepEvery, func() {
			if _, err := s.ExpireIdempotency(ctx); err != nil {
				s.logger.Warn("idempotency expiry failed", zap.Error(err))
			}
			if _, err := s.ExpireNotifications(ctx); err != nil {
				s.logger.Warn("notification marker expiry failed", zap.Error(err))
			}
		})
	}()
	wg.Wait()
}

// resolveLoop runs resolver passes every ResolveEvery and as soon as this
// node becomes leader (a new term).
func (s *Svc) resolveLoop(ctx context.Context) {
	resolve := time.NewTicker(s.cfg.ResolveEvery)
	defer resolve.Stop()
	poll := time.NewTicker(LeadershipPoll)
	defer poll.Stop()
	var seen Leadership
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			ld := s.log.Leadership()
			if ld.IsLeader && (!seen.IsLeader || ld.Term != seen.Term) {
				s.logger.Info("became leader; resolving in-doubt intents", zap.Uint64("term", ld.Term))
				if _, err := s.ResolveInDoubt(ctx); err != nil {
					s.logger.Warn("in-doubt resolution pass failed", zap.Error(err))
				}
			}
			seen = ld
		case <-resolve.C:
			if _, err := s.ResolveInDoubt(ctx); err != nil {
				s.logger.Warn("in-doubt resolution pass failed", zap.Error(err))
			}
		}
	}
}

// every runs fn every period until ctx ends.
func (s *Svc) every(ctx context.Context, period time.Duration, fn func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// ---------------------------------------------------------------------------
// Errors.

// Codes of unavailability.
const (
	CodeNotLeader      = "not_leader"
	CodeNoLeader       = "no_leader"
	CodeOutcomeUnknown = "outcome_unknown"
	CodeOverloaded     = "overloaded"
	CodeShuttingDown   = "shutting_down"
	CodeUnauthorized   = "unauthorized"
	CodeNotConfigured  = "not_configured"
	// CodeLeaderUnavailable: the leader did not confirm a read in time
	// (its read barrier, or a forwarded read, timed out). A read changed
	// nothing, so it is simply asked again.
	CodeLeaderUnavailable = "leader_unavailable"
	// CodeRemovedFromCluster: this node is no longer a member (ErrRemoved)
	// and serves nothing; the members do.
	CodeRemovedFromCluster = "removed_from_cluster"
)

func errNotLeader() *Error {
	return NewError(KindUnavailable, CodeNotLeader, "", "this node is not the leader; send the request to the leader")
}

// mapLogError turns a Log error into the caller's *Error.
func mapLogError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return NewError(KindUnavailable, CodeOutcomeUnknown, "",
			"the request may or may not have been executed; retry with the same Idempotency-Key to learn the outcome")
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrDropped):
		return NewError(KindUnavailable, CodeNoLeader, "", "no leader is available right now; retry shortly")
	case errors.Is(err, ErrQueueFull):
		return NewError(KindUnavailable, CodeOverloaded, "", "the switch is overloaded; retry shortly")
	case errors.Is(err, ErrStopped):
		return NewError(KindUnavailable, CodeShuttingDown, "", "this node is shutting down; retry on another node")
	case errors.Is(err, ErrRemoved):
		return ErrorRemoved()
	}
	return err
}

// ErrorRemoved is the answer of a node removed from the cluster to a
// request it could not start: it proposed and read nothing.
func ErrorRemoved() *Error {
	return NewError(KindUnavailable, CodeRemovedFromCluster, "",
		"this node was removed from the cluster and serves no requests; send them to a member of the cluster")
}

// propose encodes, proposes and unwraps a command. A rejection comes back
// as *Error with the result.
func (s *Svc) propose(ctx context.Context, typ string, cmd any) (*ApplyResult, error) {
	if !s.log.Leadership().IsLeader {
		return nil, errNotLeader()
	}
	data, err := encodeCommand(typ, cmd)
	if err != nil {
		return nil, err
	}
	v, err := s.log.Propose(ctx, data)
	return applied(typ, v, err)
}

// applied unwraps what Log.Propose returned: the apply result, with a
// domain rejection as its error.
func applied(typ string, v any, err error) (*ApplyResult, error) {
	if errors.Is(err, ErrStopped) {
		// A node stopping with a proposal in flight may have appended it,
		// and the next leader may commit it (and, for a payment, its
		// provider call may have been made): the outcome is unknown, and
		// only a retry under the same key is safe. "Shutting down, retry
		// elsewhere" would let a client retry under a new key and pay twice.
		return nil, NewError(KindUnavailable, CodeOutcomeUnknown, "",
			"this node stopped while the request was in flight; it may or may not have been executed: retry with the same Idempotency-Key on another node")
	}
	if err != nil {
		return nil, mapLogError(err)
	}
	res, ok := v.(*ApplyResult)
	if !ok || res == nil {
		return nil, fmt.Errorf("propose %s: unexpected apply result %T", typ, v)
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// proposeAnywhere proposes a command any member may: the answer of a
// provider call that was already made, a member's version report. Unlike
// propose it does not require this node to lead: the call's
// outcome is a fact whoever records it, apply ignores a result that comes
// late (the next leader's resolver may have settled the attempt), and
// recording it through the new leader answers the client instead of
// leaving the payment in doubt when leadership moves (a rolling release
// hands it over, and raft drops proposals during the transfer). A dropped
// proposal, or none while no leader is known, never applied, so it is
// proposed again until ctx ends.
func (s *Svc) proposeAnywhere(ctx context.Context, typ string, cmd any) (*ApplyResult, error) {
	data, err := encodeCommand(typ, cmd)
	if err != nil {
		return nil, err
	}
	wait := resultRetryMin
	for {
		v, err := s.log.Propose(ctx, data)
		if errors.Is(err, ErrDropped) || errors.Is(err, ErrNoLeader) {
			select {
			case <-ctx.Done():
				return nil, mapLogError(err)
			case <-time.After(wait):
			}
			wait = min(2*wait, resultRetryMax)
			if r, ok := cmd.(restamper); ok {
				// The command's time is the time it is proposed: a payment
				// result opens the failover attempt at it, and that call
				// is sent only within the provider timeout after it.
				r.restamp(s.clock.Now())
				if data, err = encodeCommand(typ, cmd); err != nil {
					return nil, err
				}
			}
			continue
		}
		if errors.Is(err, ErrRemoved) {
			// This node was removed after the call was made (a leader
			// removed mid-payment): the call may have moved money, and the
			// next leader's resolver settles it, so the request is in
			// doubt, not refused (removed_from_cluster would let a client
			// retry under a new key and pay twice).
			return nil, NewError(KindUnavailable, CodeOutcomeUnknown, "",
				"this node was removed from the cluster while the request was in flight; it may or may not have been executed: retry with the same Idempotency-Key on a member")
		}
		return applied(typ, v, err)
	}
}

// restamper is a command whose time proposeAnywhere moves to each retry.
type restamper interface{ restamp(at time.Time) }

func (c *cmdPaymentResult) restamp(at time.Time) { c.At = at }

// The backoff of proposeAnywhere: an election or transfer takes a few
// heartbeats.
const (
	resultRetryMin = 10 * time.Millisecond
	resultRetryMax = 200 * time.Millisecond
)

// detached is a context for work that must finish even if the client
// leaves: recording a provider's answer.
func (s *Svc) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ProposeTimeout)
}

// barrier waits for a linearizable read (ReadBarrier). A barrier only
// reads, and every caller runs it before it proposes anything, so a
// barrier that times out leaves nothing in doubt: it is answered
// leader_unavailable (ask again), never mapLogError's outcome_unknown,
// which would send a client to learn the outcome of a write that cannot
// have happened.
func (s *Svc) barrier(ctx context.Context) error {
	err := s.log.ReadBarrier(ctx)
	if errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return NewError(KindUnavailable, CodeLeaderUnavailable, "",
			"the leader did not confirm this read in time; nothing was changed: retry shortly")
	}
	return mapLogError(err)
}

// ---------------------------------------------------------------------------
// Idempotency on the proposer.

// MaxIdempotencyKeyLen bounds Idempotency-Key (API.md: 1..255 printable ASCII).
const MaxIdempotencyKeyLen = 255

func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > MaxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// fingerprint identifies a request: operation, target and canonical body
// (the typed request re-marshalled, so formatting does not matter).
func fingerprint(op, target string, body any) string {
	raw, _ := json.Marshal(body) // request types always marshal
	h := sha256.New()
	h.Write([]byte(op))
	h.Write([]byte{0})
	h.Write([]byte(target))
	h.Write([]byte{0})
	h.Write(raw)
	return hex.EncodeToString(h.Sum(nil))
}

// idemStart validates the key and answers from an existing record. It
// returns (ref, nil, nil) to go on; apply checks again atomically, which
// settles concurrent duplicates.
func (s *Svc) idemStart(c Caller, op, target string, body any) (*idemRef, *Reply, error) {
	if c.IdempotencyKey == "" {
		return nil, nil, nil
	}
	if !validIdempotencyKey(c.IdempotencyKey) {
		return nil, nil, NewError(KindInvalid, "invalid_idempotency_key", "Idempotency-Key", "Idempotency-Key must be 1 to 255 printable ASCII characters")
	}
	ref := &idemRef{Merchant: c.MerchantID, Key: c.IdempotencyKey, Fingerprint: fingerprint(op, target, body)}
	key := idemKey(ref.Merchant, ref.Key)
	if !s.m.keyMayExist(key) {
		// A new key, the common case: a store read would miss every
		// memtable and level.
		return ref, nil, nil
	}
	var rec idemRecord
	ok, err := getJSON(s.store, key, &rec)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return ref, nil, nil
	}
	ans := idemAnswer(&rec, ref.Fingerprint)
	if ans.Err != nil {
		return nil, nil, ans.Err
	}
	return nil, &ans.Reply, nil
}

// ---------------------------------------------------------------------------
// Auth and config.

// Authenticate maps an API key to its merchant. A node without a routing
// configuration (a new member still catching up) cannot tell and answers
// 503; a key this node does not know is confirmed through a barrier first,
// so a node behind on configuration changes does not refuse a key the
// cluster already accepts.
func (s *Svc) Authenticate(ctx context.Context, apiKey string) (string, error) {
	unauthorized := NewError(KindUnauthorized, CodeUnauthorized, "", "missing or unknown API key")
	if apiKey == "" {
		return "", unauthorized
	}
	hash := HashAPIKey(apiKey)
	for confirmed := false; ; confirmed = true {
		cfg, ok := s.m.Config()
		if !ok {
			return "", NewError(KindUnavailable, CodeNotConfigured, "", "this node has no routing configuration yet (it is catching up); retry shortly or on another node")
		}
		if mc, ok := cfg.MerchantForKeyHash(hash); ok {
			return mc.ID, nil
		}
		if confirmed {
			return "", unauthorized
		}
		if err := s.barrier(ctx); err != nil {
			return "", err
		}
	}
}

// GetConfig returns the routing configuration.
func (s *Svc) GetConfig(ctx context.Context) (Reply, error) {
	if err := s.barrier(ctx); err != nil {
		return Reply{}, err
	}
	cfg, ok := s.m.Config()
	if !ok {
		return Reply{}, NewError(KindNotFound, CodeNotConfigured, "", "no routing configuration has been stored yet")
	}
	return jsonReply(200, cfg)
}

// PutConfig validates and replicates a new routing configuration.
//
// Besides Validate (which apply repeats), the proposer refuses a change
// that would lock every merchant out (no merchants), one based on a
// version that is no longer current (cfg.Version, when not 0: an
// optimistic-concurrency check for GET-edit-PUT), and one that drops or
// re-points a provider that open calls still need (openCallsKeep). These
// checks run only here, after a read barrier, so they need no cluster
// version gate; changes are serialized on this node (the leader, where
// followers forward writes), so two concurrent PUTs with the same version
// cannot both pass. Across a leader change in between, the check is best
// effort: apply does not repeat it.
func (s *Svc) PutConfig(ctx context.Context, cfg RoutingConfig) (Reply, error) {
	if e := cfg.Validate(); e != nil {
		return Reply{}, e
	}
	if e := configUsable(&cfg); e != nil {
		return Reply{}, e
	}
	s.configMu.Lock()
	defer s.configMu.Unlock()
	if err := s.barrier(ctx); err != nil {
		return Reply{}, err
	}
	cur, _ := s.m.Config()
	if err := configVersionCurrent(cur, cfg.Version); err != nil {
		return Reply{}, err
	}
	if e := cfg.CheckNewAmountCurrencies(cur); e != nil {
		return Reply{}, e
	}
	if e := configFieldsGate(&cfg, s.m.ClusterVersion()); e != nil {
		return Reply{}, e
	}
	if err := openCallsKeep(s.store, cur, cfg); err != nil {
		return Reply{}, err
	}
	if e, err := paymentsKeepProviders(s.store, &cfg); err != nil {
		return Reply{}, err
	} else if e != nil {
		return Reply{}, e
	}
	res, err := s.propose(ctx, cmdTypeConfigPut, &cmdConfigPut{At: s.clock.Now(), Config: cfg})
	if err != nil {
		return Reply{}, err
	}
	return res.Reply, nil
}

// configUsable refuses (400 invalid_config) a configuration that Validate
// accepts but that would stop the switch from serving anyone: without
// merchants every API key is refused (401) and no order can be created,
// paid, captured or refunded. It is checked only when a change is
// proposed (apply accepts such a configuration, as earlier releases did).
func configUsable(cfg *RoutingConfig) *Error {
	if len(cfg.Merchants) == 0 {
		return NewError(KindInvalid, CodeInvalidConfig, "merchants",
			"the configuration has no merchants: every API key would be refused (401) and no order could be created, paid, captured or refunded; keep at least one merchant")
	}
	for i, fr := range cfg.FraudRules {
		if fr.EmailSuffix != "" && !matchableDomain(fr.EmailSuffix) {
			return NewError(KindInvalid, CodeInvalidConfig, fmt.Sprintf("fraud_rules[%d].email_suffix", i),
				fmt.Sprintf("email suffix %q can never match an email address: give a domain (example.com), a domain exactly (@example.com) or its subdomains (.example.com)", fr.EmailSuffix))
		}
	}
	return nil
}

// matchableDomain reports whether a fraud rule's email suffix names a
// domain emailMatches can match: after one leading '@' or '.', non-empty
// labels separated by single dots. Validate accepts "@.example.com" or
// "..", a rule that silently never holds anything.
func matchableDomain(suffix string) bool {
	d := suffix
	if strings.HasPrefix(d, "@") || strings.HasPrefix(d, ".") {
		d = d[1:] // one marker: "@." is neither form
	}
	return d != "" && !slices.Contains(strings.Split(d, "."), "")
}

// CodeConfigVersionConflict refuses a configuration change based on a
// version that is no longer the current one.
const CodeConfigVersionConflict = "config_version_conflict"

// configVersionCurrent refuses a change whose version (the version the
// operator read and edited) is not the current one: someone else's change
// was accepted in between and would be silently undone. Version 0 (or
// none in the body) skips the check; versions start at 1.
func configVersionCurrent(cur *RoutingConfig, version uint64) error {
	if version == 0 {
		return nil
	}
	var have uint64
	if cur != nil {
		have = cur.Version
	}
	if version == have {
		return nil
	}
	msg := fmt.Sprintf("the configuration is at version %d, the change was based on version %d; GET it again, reapply your change and PUT it with version %d (or without a version to overwrite)", have, version, have)
	if cur == nil {
		msg = fmt.Sprintf("no configuration is stored yet, the change was based on version %d; PUT it without a version", version)
	}
	return NewError(KindConflict, CodeConfigVersionConflict, "version", msg)
}

// Codes of openCallsKeep.
const (
	// CodeProviderHasOpenCalls refuses a configuration without a provider
	// that still has calls without a final result.
	CodeProviderHasOpenCalls = "provider_has_open_calls"
	// CodeProviderEndpointHasOpenCalls refuses a configuration that
	// changes the base_url of such a provider.
	CodeProviderEndpointHasOpenCalls = "provider_endpoint_has_open_calls"
)

// openCallsKeep refuses cfg if it drops a provider that calls without a
// final result (intents, in doubt, pending at the shopper's bank) still
// name, or changes its base_url: only a status inquiry at the endpoint
// that received them can settle them. Dropped, they would stay in doubt
// for good, holding their orders. Re-pointed, the inquiry would go to an
// endpoint that never saw them, which answers not_found (and fences the
// key there, not where the call went): the switch would conclude the
// attempt was never received and open the order again while the old
// endpoint may have charged. Timeouts and breaker settings may change.
// cur is the configuration in force (nil when none is stored).
//
// The check reads the state as of the barrier; a call opened at a dropped
// provider between it and the change's apply is settled once the provider
// is configured again, but one opened at a re-pointed provider in that
// window, if it ends in doubt, is asked about at the new endpoint.
func openCallsKeep(r Reader, cur *RoutingConfig, cfg RoutingConfig) error {
	open, err := ListInDoubt(r, 0)
	if err != nil {
		return fmt.Errorf("list open calls: %w", err)
	}
	if len(open) == 0 {
		return nil
	}
	kept := make(map[string]int, len(cfg.Providers))
	for i, p := range cfg.Providers {
		kept[p.Name] = i
	}
	was := map[string]string{}
	if cur != nil {
		for _, p := range cur.Providers {
			was[p.Name] = p.BaseURL
		}
	}
	count := map[string]int{}
	for _, d := range open {
		count[d.Provider]++
	}
	for _, d := range open {
		i, ok := kept[d.Provider]
		if !ok {
			return NewError(KindConflict, CodeProviderHasOpenCalls, "providers",
				fmt.Sprintf("provider %s still has %d call(s) without a final result (payment %s among them); keep it configured until they are resolved", d.Provider, count[d.Provider], d.PaymentID))
		}
		old, known := was[d.Provider]
		if to := cfg.Providers[i].BaseURL; known && to != old {
			return NewError(KindConflict, CodeProviderEndpointHasOpenCalls, fmt.Sprintf("providers[%d].base_url", i),
				fmt.Sprintf("provider %s still has %d call(s) without a final result (payment %s among them) sent to %s; only a status inquiry there can settle them, so keep its base_url until they are resolved (it cannot change to %s yet; timeouts and breaker settings may change)", d.Provider, count[d.Provider], d.PaymentID, old, to))
		}
	}
	return nil
}

// EnsureConfig stores cfg when no configuration exists (bootstrap). Safe
// to call on every start and from several nodes: apply keeps the first.
func (s *Svc) EnsureConfig(ctx context.Context, cfg RoutingConfig) error {
	if _, ok := s.m.Config(); ok {
		return nil
	}
	if e := cfg.Validate(); e != nil {
		return e
	}
	if e := configFieldsGate(&cfg, s.m.ClusterVersion()); e != nil {
		// A new cluster moves its gate within moments of its members'
		// first reports; the caller retries.
		return fmt.Errorf("seed configuration: %w", e)
	}
	_, err := s.propose(ctx, cmdTypeConfigPut, &cmdConfigPut{At: s.clock.Now(), Config: cfg, OnlyIfAbsent: true})
	return err
}

func (s *Svc) providerTimeout(name string) time.Duration {
	if cfg, ok := s.m.Config(); ok {
		for _, p := range cfg.Providers {
			if p.Name == name && p.TimeoutMillis > 0 {
				return time.Duration(p.TimeoutMillis) * time.Millisecond
			}
		}
	}
	return DefaultProviderTimeout
}

// ---------------------------------------------------------------------------
// Reads.

func notFound(what, id string) *Error {
	return NewError(KindNotFound, what+"_not_found", "", what+" "+id+" not found")
}

// readOrder and readPayment read a resource for caller c. Without barrier
// they read this node's state as it is (writes are judged again in apply),
// but a miss is confirmed through a barrier before it is answered: a node
// that is behind, or a deposed leader that has not heard of the new term,
// must not answer 404 for what the cluster has acknowledged (it answers
// 503 when it cannot reach a quorum, and the client retries elsewhere).
func (s *Svc) readOrder(ctx context.Context, c Caller, id string, barrier bool) (*orderRec, error) {
	var o *orderRec
	found, err := s.confirmedRead(ctx, barrier, func() (bool, error) {
		var err error
		o, err = loadOrder(s.store, id)
		return o != nil && o.MerchantID == c.MerchantID, err
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, notFound("order", id)
	}
	return o, nil
}

func (s *Svc) readPayment(ctx context.Context, c Caller, id string, barrier bool) (*paymentRec, error) {
	return s.readPaymentIf(ctx, id, barrier, func(p *paymentRec) bool { return p.MerchantID == c.MerchantID })
}

// readPaymentIf reads payment id as readPayment does, visible when
// visible says so (the admin API's review sees every merchant's).
func (s *Svc) readPaymentIf(ctx context.Context, id string, barrier bool, visible func(*paymentRec) bool) (*paymentRec, error) {
	var p *paymentRec
	found, err := s.confirmedRead(ctx, barrier, func() (bool, error) {
		var err error
		p, err = loadPayment(s.store, id)
		return p != nil && visible(p), err
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, notFound("payment", id)
	}
	return p, nil
}

// confirmedRead runs read, after a barrier when barrier is set; a miss
// without one is read again after a barrier before it is answered.
func (s *Svc) confirmedRead(ctx context.Context, barrier bool, read func() (found bool, err error)) (bool, error) {
	for {
		if barrier {
			if err := s.barrier(ctx); err != nil {
				return false, err
			}
		}
		found, err := read()
		if err != nil || found || barrier {
			return found, err
		}
		barrier = true
	}
}

// GetOrder returns an order with its payments.
func (s *Svc) GetOrder(ctx context.Context, c Caller, orderID string) (Reply, error) {
	o, err := s.readOrder(ctx, c, orderID, true)
	if err != nil {
		return Reply{}, err
	}
	ps, err := loadOrderPayments(s.store, o.ID)
	if err != nil {
		return Reply{}, err
	}
	view := orderView(o, ps)
	body, err := encodeOrder(&view)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: 200, Body: body}, nil
}

// GetPayment returns a payment.
func (s *Svc) GetPayment(ctx context.Context, c Caller, paymentID string) (Reply, error) {
	p, err := s.readPayment(ctx, c, paymentID, true)
	if err != nil {
		return Reply{}, err
	}
	return paymentReply(200, p)
}

// Timeline returns an order's events in order.
func (s *Svc) Timeline(ctx context.Context, c Caller, orderID string) (Reply, error) {
	o, err := s.readOrder(ctx, c, orderID, true)
	if err != nil {
		return Reply{}, err
	}
	evs, err := loadTimeline(s.store, o.ID)
	if err != nil {
		return Reply{}, err
	}
	return jsonReply(200, TimelineResponse{Events: evs})
}

func loadTimeline(r Reader, orderID string) ([]TimelineEvent, error) {
	evs := []TimelineEvent{}
	var decodeErr error
	start, end := timelineRange(orderID)
	if err := r.Scan(start, end, func(k, v []byte) bool {
		var ev TimelineEvent
		if err := json.Unmarshal(v, &ev); err != nil {
			decodeErr = fmt.Errorf("decode %q: %w", k, err)
			return false
		}
		evs = append(evs, ev)
		return true
	}); err != nil {
		return nil, fmt.Errorf("scan timeline of %s: %w", orderID, err)
	}
	return evs, decodeErr
}

// ---------------------------------------------------------------------------
// Orders.

// Bounds on order input.
const (
	MaxReferenceLen = 255
	MaxOrderLines   = 1000
	MaxEmailLen     = 254
	MaxSKULen       = 255
)

// ValidChannel reports whether ch is one of the channels an order or a
// refund may name (online, pos, moto).
func ValidChannel(ch string) bool {
	return ch == ChannelOnline || ch == ChannelPOS || ch == ChannelMOTO
}

func validateOrder(req *CreateOrderRequest) *Error {
	if len(req.Reference) > MaxReferenceLen {
		return NewError(KindInvalid, "invalid_reference", "reference", fmt.Sprintf("reference must be at most %d bytes of UTF-8", MaxReferenceLen))
	}
	if e := ValidateMoney(req.Amount, "amount"); e != nil {
		return e
	}
	if !ValidCountry(req.Customer.Country) {
		return NewError(KindInvalid, "invalid_country", "customer.country",
			fmt.Sprintf("customer.country %q is not an ISO 3166-1 alpha-2 code (e.g. NL)", req.Customer.Country))
	}
	if len(req.Customer.Email) > MaxEmailLen || len(req.Customer.ID) > MaxReferenceLen {
		return NewError(KindInvalid, "invalid_customer", "customer", "customer id or email too long")
	}
	if req.Channel == "" {
		req.Channel = ChannelOnline
	}
	if !ValidChannel(req.Channel) {
		return NewError(KindInvalid, "invalid_channel", "channel", fmt.Sprintf("channel %q must be online, pos or moto", req.Channel))
	}
	if len(req.Lines) > MaxOrderLines {
		return NewError(KindInvalid, "too_many_lines", "lines", fmt.Sprintf("at most %d lines", MaxOrderLines))
	}
	if len(req.Lines) > 0 {
		var sum int64
		for i, l := range req.Lines {
			f := fmt.Sprintf("lines[%d]", i)
			if l.SKU == "" || len(l.SKU) > MaxSKULen {
				return NewError(KindInvalid, "invalid_line", f+".sku", "sku is required (at most 255 bytes of UTF-8)")
			}
			if l.Quantity <= 0 || l.Quantity > 1_000_000 {
				return NewError(KindInvalid, "invalid_line", f+".quantity", "quantity must be between 1 and 1000000")
			}
			if l.UnitAmount < 0 || l.UnitAmount > MaxMoneyValue/l.Quantity {
				return NewError(KindInvalid, "invalid_line", f+".unit_amount", "unit_amount must be between 0 and the maximum amount")
			}
			sum += l.Quantity * l.UnitAmount
			if sum > MaxMoneyValue {
				return NewError(KindInvalid, "lines_mismatch", "lines", "the lines add up to more than the maximum amount")
			}
		}
		if sum != req.Amount.Value {
			return NewError(KindInvalid, "lines_mismatch", "lines",
				fmt.Sprintf("the lines add up to %d but amount.value is %d", sum, req.Amount.Value))
		}
	}
	return nil
}

// CreateOrder validates and creates an order.
func (s *Svc) CreateOrder(ctx context.Context, c Caller, req CreateOrderRequest) (Reply, error) {
	if !s.log.Leadership().IsLeader {
		return Reply{}, errNotLeader()
	}
	ref, stored, err := s.idemStart(c, "create_order", "", req)
	if err != nil || stored != nil {
		return derefReply(stored), err
	}
	if e := validateOrder(&req); e != nil {
		return Reply{}, e
	}
	now := s.clock.Now()
	cmd := &cmdCreateOrder{At: now, Idem: ref, Order: Order{
		ID: s.ids.New(PrefixOrder), MerchantID: c.MerchantID, Reference: req.Reference, Amount: req.Amount,
		Customer: req.Customer, Channel: req.Channel, Lines: req.Lines,
	}}
	// Version 2 format: older members would drop the field (gate).
	if s.VersionActive(VersionOrderExpiry) {
		exp := now.Add(s.orderExpiry(c.MerchantID))
		cmd.Order.ExpiresAt = &exp
	}
	if s.m.sabotage.ackBeforeCommit.Load() {
		return s.ackBeforeCommit(cmd)
	}
	res, err := s.propose(ctx, cmdTypeCreateOrder, cmd)
	if err != nil {
		return Reply{}, err
	}
	return res.Reply, nil
}

// ackBeforeCommit is FlawAckBeforeCommit (sabotage.go): the order apply
// would create, answered before its command is even proposed.
func (s *Svc) ackBeforeCommit(cmd *cmdCreateOrder) (Reply, error) {
	view := cmd.Order
	view.Status, view.CreatedAt, view.Payments = OrderCreated, cmd.At, []Payment{}
	zero := Money{Currency: view.Amount.Currency}
	view.Authorized, view.Captured, view.Refunded = zero, zero, zero
	body, err := encodeOrder(&view)
	if err != nil {
		return Reply{}, err
	}
	s.m.sabotage.firedAck.Add(1)
	go func() {
		time.Sleep(AckBeforeCommitDelay)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.propose(ctx, cmdTypeCreateOrder, cmd); err != nil {
			s.logger.Warn("SABOTAGE ack_before_commit: an acknowledged order was never committed",
				zap.String("order", cmd.Order.ID), zap.Error(err))
		}
	}()
	return Reply{Status: 201, Body: body}, nil
}

func derefReply(r *Reply) Reply {
	if r == nil {
		return Reply{}
	}
	return *r
}
