package txswitch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"go.uber.org/zap"
)

// The cluster version gate (DESIGN.md, "Rolling online schema changes").
//
// A node that applies a command it cannot decode rejects it instead of
// executing it, so during a rolling upgrade a new binary writing a new
// format would make the old members' state silently diverge. The gate
// prevents that: the cluster version is replicated state, every member
// reports the versions its binary supports (a node_version command at
// start), and the leader moves the cluster version one step only when
// every current member supports the next one. Code that writes a new
// record or command format asks Svc.VersionActive first and keeps writing
// the old format until the gate has moved. A member whose binary cannot
// run the cluster's version (a downgrade past the gate, a stale node
// rejoining) stops at the apply of the bump or at restore, with an error
// that says so, instead of diverging.
const (
	// BinaryMinVersion..BinaryMaxVersion are the cluster versions this
	// binary runs: it reads the formats of both and writes the newer one
	// only once the cluster version is there. Version 1 is the formats of
	// the first release; version 2 adds order expiry (VersionOrderExpiry),
	// version 3 a payment's cancellation (VersionCancellation), version 4
	// streamed snapshot images (VersionStreamedImages), version 5 three
	// money rules (VersionMoneyRules), version 6 the release of an
	// authorization's uncaptured rest (VersionRelease), version 7 the
	// provider's amount checked (VersionProviderAmount), version 8 outbox
	// events that name their order, payment or timeline event instead of
	// copying it (VersionOutboxRefs), version 9 captures, refunds and
	// cancellations settled by hand (VersionOperationResolve), version 10
	// fixed surcharges per currency (VersionCurrencyFees), version 11
	// the follow-ups of approved payments kept reachable and traceable
	// (VersionFollowUps), version 12 an operation answered in doubt
	// replayed as answered (VersionOperationReplay), version 13 a
	// payment held for review cancelled by its merchant
	// (VersionWithdrawHeld).
	BinaryMinVersion = 1
	BinaryMaxVersion = VersionWithdrawHeld
	// VersionCancellation: a payment record carries its cancellation
	// (Payment.Cancellation), so a void in doubt is visible. Below it the
	// field is not written: an older member would drop it and serve the
	// payment differently.
	VersionCancellation = 3
	// VersionStreamedImages: a leader sends a follower that needs a
	// snapshot the state image as a stream next to the raft message
	// (consensus/images.go), in bounded memory and whatever its size,
	// instead of inside the message. Below it a member may not read such
	// a snapshot (an older binary would stop on it), so the image goes
	// inside the message, bounded by the transport's frame size.
	VersionStreamedImages = 4
	// VersionMoneyRules: three money rules that change replicated state,
	// hence from one log index on every member:
	//   - an order is paid once its captures cover its amount plus the
	//     surcharges of the payments that count towards it (the surcharge
	//     counted towards the goods: iDEAL 9.80 + 0.29 on an order of 10.00
	//     made it paid with 0.20 open);
	//   - a payment whose captures are refunded but whose authorization is
	//     not all captured stays partially_refunded and capturable (it became
	//     refunded, and the rest of the authorization could be neither
	//     captured nor released: a partial shipment returned before the next
	//     one shipped);
	//   - an order whose payments were cancelled expires like an unpaid one
	//     (it kept taking payments past its expiry).
	VersionMoneyRules = 5
	// VersionRelease: a cancel of a partially captured payment releases
	// the authorization's uncaptured rest (a partial shipment whose other
	// items will never ship), instead of being refused: the payment keeps
	// its captures, its authorization shrinks to them, Payment.Released
	// and Cancellation.Amount record the release, and the order counts as
	// paid once its captures cover what was not released. An older member
	// refuses such a cancel, hence the gate.
	VersionRelease = 6
	// VersionProviderAmount: an approval whose amount, as the provider
	// reports it, is not the amount asked for (another value or currency)
	// does not settle the payment or operation as approved: it stays in
	// doubt, with an amount_mismatch timeline event, until someone looks.
	// Before, the switch booked the amount it had asked for, so its money
	// could differ from the provider's. Also from it, a payment held for
	// review no longer outlives its order: approving it once the order
	// expired is refused (order_expired), and the order expiry sweep
	// cancels a hold still open then (review_expired) and expires the
	// order, which before waited for an admin forever. Also from it
	// (notifications.go), a provider notification for an attempt or
	// cancellation no longer open is recorded on its order's timeline
	// (late_result_ignored, bounded per order), and an approval the switch
	// did not book as approved also as unbooked_provider_approval (an
	// explain cause), where before it left no trace; and the notification
	// dedupe markers are indexed by time (ne/) and expired after the
	// idempotency retention by expire_notifications commands, a command an
	// older member does not know. Also from it, an idempotency expiry
	// command scans from its After key (cmdExpireIdem), so records still
	// in progress at the front of the index no longer stop expiry.
	VersionProviderAmount = 7
	// VersionOutboxRefs: the outbox event of an order, a payment or a
	// timeline event names it (outboxRecord.Ref) instead of carrying a
	// copy, and ReadOutbox reads the resource when the exporter asks. The
	// copies were more than half of the bytes a payment wrote on every
	// node (about 4.6 of 6.9 KB for a card payment), each written to the WAL, the memtable
	// and the sstables until the export trimmed them. The exporter
	// upserts rows by id, so an order or payment read as it is at export
	// time (never older than the event: both were written by one batch)
	// leaves PostgreSQL as it would have been after the later events; a
	// timeline event never changes. An older member cannot read a
	// reference, hence the gate.
	VersionOutboxRefs = 8
	// VersionOperationResolve: an operator settles a capture, refund or
	// cancellation whose provider approved another amount than asked
	// (stuck in doubt, like such a payment attempt since version 7) with
	// POST /v1/admin/payments/{id}/resolve and an operation. It is a new
	// command an older member cannot apply, hence the gate.
	VersionOperationResolve = 9
	// VersionCurrencyFees: a method's fixed surcharge may be given per
	// currency (SurchargeConfig.FixedByCurrency), since a fixed fee in
	// minor units means a different amount in every currency. An older
	// member decodes the configuration without the field, keeps it
	// without, and as leader would offer and charge other surcharges,
	// hence the gate: PutConfig refuses the field below it, and so does
	// apply.
	VersionCurrencyFees = 10
	// VersionFollowUps: the captures, refunds and cancellations of
	// approved payments keep their provider and leave a trace. Apply
	// marks a provider at its first approved payment
	// (m/provider_payments/), and a configuration that drops a marked
	// provider is refused, by PutConfig and by apply (providermarks.go);
	// the move to it marks every provider configured then, whose earlier
	// payments nobody tracked. Also from it, a capture or refund's id is
	// indexed to its payment (oi/), so that a provider's notification
	// about one the switch already settled is recorded on its order's
	// timeline like one about an attempt or cancellation
	// (notifications.go), where before it left no trace. And a method's
	// authorization_validity_seconds (authlapse.go), a configuration field
	// an older member would drop. An older member writes neither index,
	// accepts such a configuration, and stores it without the field, hence
	// the gate.
	VersionFollowUps = 11
	// VersionOperationReplay: a capture, refund or cancellation whose
	// provider did not answer definitively is answered "in doubt" (201,
	// or 200 for a cancel), and from this version its idempotency record
	// is finished with that answer, as a payment's is: a retry with the
	// same key gets the same status and body (API.md), and GET
	// /v1/payments/{id} tells the outcome. Before, the record stayed in
	// progress until the outcome was known, so a retry got 409
	// idempotency_request_in_progress and, later, an answer other than
	// the first (succeeded, or 422 capture_failed after a 201). The
	// record is replicated state an older member would leave in
	// progress, hence the gate.
	VersionOperationReplay = 12
	// VersionWithdrawHeld: POST /v1/payments/{id}/cancel on a payment
	// held for review cancels it (no provider has been asked, so there is
	// nothing to void), with its Idempotency-Key bound to the answer.
	// Before, only the operator's review could end a hold, and a merchant
	// whose shopper called off the order had to ask for it. The command
	// is a review with the merchant's decision and key, which an older
	// member would refuse or apply without its idempotency record, hence
	// the gate. From the same version a capture or refund that finds
	// nothing left when it is applied (its check raced another's) is
	// refused 409 invalid_state, as the service refuses one it sees
	// first, instead of 422 "exceeds the EUR 0.00 still authorized": a
	// rejection changes no state, but replaying a journal gives the
	// answers it gave (golden_test.go).
	VersionWithdrawHeld = 13
	// initialClusterVersion is the version of a cluster that never moved
	// its gate (no m/cluster_version key).
	initialClusterVersion = 1
)

// BinaryVersions is what this binary supports.
var BinaryVersions = VersionRange{Min: BinaryMinVersion, Max: BinaryMaxVersion}

// VersionRange is the cluster versions a binary can run.
type VersionRange struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

func (r VersionRange) valid() bool { return r.Min >= 1 && r.Max >= r.Min }

// VersionStatus is what an operator sees of the gate: the cluster's
// version, this node's binary, and every member's report.
type VersionStatus struct {
	Cluster int                     `json:"cluster"`
	Binary  VersionRange            `json:"binary"`
	Members map[uint64]VersionRange `json:"members"`
}

const (
	cmdTypeNodeVersion    = "node_version"
	cmdTypeClusterVersion = "cluster_version"
)

// cmdNodeVersion records what member Node's binary supports.
type cmdNodeVersion struct {
	cmdHeader
	Node     uint64       `json:"node"`
	Supports VersionRange `json:"supports"`
}

// cmdClusterVersion moves the gate to To; Members is the membership the
// leader checked (apply checks their reports again).
type cmdClusterVersion struct {
	cmdHeader
	To      int      `json:"to"`
	Members []uint64 `json:"members"`
}

// CodeVersionNotSupported rejects a gate move some member cannot run.
const CodeVersionNotSupported = "cluster_version_not_supported"

func nodeVersionKey(node uint64) []byte {
	return []byte(prefixNodeVersion + strconv.FormatUint(node, 10))
}

func (ac *applyCtx) nodeVersion(c *cmdNodeVersion) (*ApplyResult, error) {
	if c.Node == 0 || !c.Supports.valid() {
		return reject(KindInvalid, CodeInvalidCommand, "", fmt.Sprintf("node_version: bad report %d %+v", c.Node, c.Supports)), nil
	}
	if err := ac.putJSON(nodeVersionKey(c.Node), c.Supports); err != nil {
		return nil, err
	}
	return &ApplyResult{}, nil
}

func (ac *applyCtx) clusterVersion(c *cmdClusterVersion) (*ApplyResult, error) {
	cur, err := ac.version()
	if err != nil {
		return nil, err
	}
	if c.To != cur+1 {
		// Another bump got there first (a leader change raced): nothing to do.
		return reject(KindConflict, CodeVersionNotSupported, "", fmt.Sprintf("cluster version is %d; a move to %d must come from %d", cur, c.To, c.To-1)), nil
	}
	if len(c.Members) == 0 {
		return reject(KindInvalid, CodeInvalidCommand, "", "cluster_version: no members"), nil
	}
	for _, id := range c.Members {
		var r VersionRange
		ok, err := getJSON(ac.b, nodeVersionKey(id), &r)
		if err != nil {
			return nil, err
		}
		if !ok || r.Max < c.To || r.Min > c.To {
			return reject(KindConflict, CodeVersionNotSupported, "", fmt.Sprintf("member %d has not reported support for cluster version %d (reported %+v)", id, c.To, r)), nil
		}
	}
	// The check of the members' reports is deterministic; this one is
	// not (it is about this node's binary), and it stops only the member
	// that should not have been counted as supporting the version.
	if c.To > ac.binary.Max {
		return nil, fmt.Errorf("the cluster moved to version %d but this binary runs versions %d..%d: upgrade this node", c.To, ac.binary.Min, ac.binary.Max)
	}
	if err := ac.b.Set([]byte(keyClusterVersion), encodeUint64(uint64(c.To))); err != nil {
		return nil, fmt.Errorf("set cluster version: %w", err)
	}
	ac.newClusterVersion = c.To
	ac.bs.version = c.To
	if c.To == VersionFollowUps {
		if err := ac.markConfiguredProviders(); err != nil {
			return nil, err
		}
	}
	return &ApplyResult{}, nil
}

// version is the cluster version as of the command being applied: read
// from the batch once per Apply (every money rule asks for it: a Get per
// order save cost an eighth of the payments bench's CPU, the key being in
// an sstable) and moved by a version bump applied in the same batch.
func (ac *applyCtx) version() (int, error) {
	if ac.bs.version == 0 {
		v, err := readClusterVersion(ac.b)
		if err != nil {
			return 0, err
		}
		ac.bs.version = v
	}
	return ac.bs.version, nil
}

func readClusterVersion(r Reader) (int, error) {
	raw, err := r.Get([]byte(keyClusterVersion))
	if errors.Is(err, ErrNotFound) {
		return initialClusterVersion, nil
	}
	if err != nil {
		return 0, fmt.Errorf("get cluster version: %w", err)
	}
	v, err := decodeUint64(raw)
	if err != nil {
		return 0, fmt.Errorf("decode cluster version: %w", err)
	}
	return int(v), nil
}

// ClusterVersion is the applied cluster version.
func (m *Machine) ClusterVersion() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.clusterVersion
}

// loadClusterVersion reads the gate from the store and refuses a state
// this binary cannot run.
func (m *Machine) loadClusterVersion() error {
	v, err := readClusterVersion(m.store)
	if err != nil {
		return err
	}
	if v < m.binary.Min || v > m.binary.Max {
		return fmt.Errorf("the state is at cluster version %d but this binary runs versions %d..%d", v, m.binary.Min, m.binary.Max)
	}
	m.mu.Lock()
	m.clusterVersion = v
	m.mu.Unlock()
	return nil
}

// memberVersions reads every member's report from the store.
func (m *Machine) memberVersions() (map[uint64]VersionRange, error) {
	out := map[uint64]VersionRange{}
	start, end := prefixRange(prefixNodeVersion)
	var derr error
	err := m.store.Scan(start, end, func(k, v []byte) bool {
		id, err := strconv.ParseUint(string(k[len(prefixNodeVersion):]), 10, 64)
		if err != nil {
			derr = fmt.Errorf("node version key %q: %w", k, err)
			return false
		}
		var r VersionRange
		if err := json.Unmarshal(v, &r); err != nil {
			derr = fmt.Errorf("node version of %d: %w", id, err)
			return false
		}
		out[id] = r
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("scan node versions: %w", err)
	}
	return out, derr
}

// VersionActive reports whether the cluster runs version v: code writing
// a format introduced in v must check it and write the old format until
// then.
func (s *Svc) VersionActive(v int) bool { return s.m.ClusterVersion() >= v }

// Versions is the gate as this node has applied it.
func (s *Svc) Versions() (VersionStatus, error) {
	members, err := s.m.memberVersions()
	if err != nil {
		return VersionStatus{}, err
	}
	return VersionStatus{Cluster: s.m.ClusterVersion(), Binary: s.m.binary, Members: members}, nil
}

// ReportVersion records what this node's binary supports, unless the
// replicated state already says so. Any member may call it (the proposal
// is forwarded to the leader).
func (s *Svc) ReportVersion(ctx context.Context, node uint64) error {
	members, err := s.m.memberVersions()
	if err != nil {
		return err
	}
	if r, ok := members[node]; ok && r == s.m.binary {
		return nil
	}
	if _, err := s.proposeAnywhere(ctx, cmdTypeNodeVersion, &cmdNodeVersion{Node: node, Supports: s.m.binary}); err != nil {
		return fmt.Errorf("report versions %d..%d of node %d: %w", s.m.binary.Min, s.m.binary.Max, node, err)
	}
	return nil
}

// AdvanceClusterVersion moves the gate as far as every member of members
// (the current membership, learners included) and this binary support,
// one committed step at a time (a new cluster goes from 1 to this
// binary's version in one call). It returns the cluster version
// afterwards. Only the leader moves it; elsewhere it does nothing.
func (s *Svc) AdvanceClusterVersion(ctx context.Context, members []uint64) (int, error) {
	if !s.log.Leadership().IsLeader || len(members) == 0 {
		return s.m.ClusterVersion(), nil
	}
	members = slices.Sorted(slices.Values(members))
	for range s.m.binary.Max { // bounded: each pass moves one step or returns
		cur := s.m.ClusterVersion()
		if cur+1 > s.m.binary.Max {
			return cur, nil
		}
		reports, err := s.m.memberVersions()
		if err != nil {
			return cur, err
		}
		for _, id := range members {
			if r, ok := reports[id]; !ok || r.Max < cur+1 {
				return cur, nil // someone still runs an older binary (or has not reported)
			}
		}
		if _, err := s.propose(ctx, cmdTypeClusterVersion, &cmdClusterVersion{To: cur + 1, Members: members}); err != nil {
			return s.m.ClusterVersion(), fmt.Errorf("move the cluster version to %d: %w", cur+1, err)
		}
		s.logger.Info("cluster version moved", zap.Int("from", cur), zap.Int("to", cur+1))
	}
	return s.m.ClusterVersion(), nil
}
