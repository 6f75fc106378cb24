package txswitch

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// The in-doubt resolver runs on the leader. It settles intents that have
// no final result — the provider timed out, or the previous leader died
// between intent and result — by asking the provider about the same
// idempotency key. It never sends the money-moving request again.

// resolveBackoff is one key's retry schedule.
type resolveBackoff struct {
	next  time.Time
	delay time.Duration
}

// ListInDoubt returns the intents without a final result, in key order.
func ListInDoubt(r Reader, limit int) ([]InDoubt, error) {
	var out []InDoubt
	var decodeErr error
	start, end := prefixRange(prefixInDoubt)
	if err := r.Scan(start, end, func(k, v []byte) bool {
		var d inDoubtRec
		if err := json.Unmarshal(v, &d); err != nil {
			decodeErr = fmt.Errorf("decode %q: %w", k, err)
			return false
		}
		out = append(out, d)
		return limit <= 0 || len(out) < limit
	}); err != nil {
		return nil, fmt.Errorf("scan in-doubt index: %w", err)
	}
	return out, decodeErr
}

// MaxResolvePerPass bounds the status inquiries of one resolver pass.
const MaxResolvePerPass = 256

// DefaultResolvePassTimeout bounds one resolver pass when the service's
// configuration sets no ResolvePassTimeout.
const DefaultResolvePassTimeout = 30 * time.Second

// DefaultResolvePerProvider is how many status inquiries a pass has out
// at one provider at a time. One at a time, a provider that timed out on
// a burst of payments (every one of them in doubt, each holding its order)
// was asked about them at the pace of its latency plus a raft round each:
// about 15 a second at 50 ms, over three minutes for 3,000. A few at once
// clear such a backlog several times faster and stay far below what the
// provider was taking before the burst.
const DefaultResolvePerProvider = 4

// ResolveInDoubt runs one resolver pass and returns how many intents it
// settled. It does nothing on a follower. Right after this node becomes
// leader (a new term), the retry schedule is reset so every intent is
// examined at once.
//
// A pass picks the intents due (at most MaxResolvePerPass, in key order)
// and asks each provider about its own ones in order, up to
// ResolvePerProvider at a time, the providers in parallel: a provider that
// hangs delays only its own intents. The pass
// ends at its deadline (ResolvePassTimeout) or as soon as this node stops
// leading the term it started in, whichever comes first: no inquiry starts
// after that, and a status inquiry under way is abandoned (it moves no
// money; the intent is asked again later). An expiry of a pending attempt
// (expireOne: an inquiry, then a cancellation at the provider) already
// begun runs to its end, bounded by its calls' provider timeouts, so a
// pass may overrun its deadline by one of those per inquiry slot.
func (s *Svc) ResolveInDoubt(ctx context.Context) (int, error) {
	ld := s.log.Leadership()
	if !ld.IsLeader {
		return 0, nil
	}
	s.mu.Lock()
	if ld.Term != s.lastTerm {
		s.lastTerm = ld.Term
		s.backoff = map[string]resolveBackoff{}
	}
	s.mu.Unlock()
	if err := s.barrier(ctx); err != nil {
		return 0, err
	}
	// The whole index is listed (it holds only open intents) so that
	// intents waiting in backoff cannot starve the others; the inquiries
	// per pass are bounded instead.
	list, err := ListInDoubt(s.store, 0)
	if err != nil {
		return 0, err
	}
	now := s.clock.Now()
	live := make(map[string]bool, len(list))
	var providers []string // in the order of their first due intent
	due := map[string][]InDoubt{}
	asked := 0
	for _, d := range list {
		live[d.Key] = true
		if asked >= MaxResolvePerPass || s.isInflight(d.Key) || now.Sub(d.At) < s.providerTimeout(d.Provider)+s.cfg.ResolveMargin {
			continue
		}
		s.mu.Lock()
		b, ok := s.backoff[d.Key]
		s.mu.Unlock()
		if ok && now.Before(b.next) {
			continue
		}
		asked++
		if due[d.Provider] == nil {
			providers = append(providers, d.Provider)
		}
		due[d.Provider] = append(due[d.Provider], d)
	}
	s.mu.Lock()
	for k := range s.backoff {
		if !live[k] {
			delete(s.backoff, k)
		}
	}
	s.mu.Unlock()
	if asked == 0 {
		return 0, nil
	}
	pass, cancel := s.passContext(ctx, ld.Term)
	defer cancel()
	var settled atomic.Int64
	var wg sync.WaitGroup
	for _, prov := range providers {
		ds := due[prov]
		var next atomic.Int64 // index of ds taken next: each slot takes the next intent, in order
		for range min(s.cfg.ResolvePerProvider, len(ds)) {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= len(ds) || pass.Err() != nil || !s.leads(ld.Term) {
						return // the rest wait for the next pass, their schedule unchanged
					}
					if s.resolveDue(ctx, pass, ds[i], now) {
						settled.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	return int(settled.Load()), nil
}

// resolveDue asks about one due intent within pass and schedules the
// next inquiry if it stays open. Proposals of answers use ctx, not pass:
// an answer the provider gave is recorded even at the pass's deadline.
func (s *Svc) resolveDue(ctx, pass context.Context, d InDoubt, now time.Time) bool {
	var done bool
	var err error
	if s.expired(d, now) {
		done, err = s.expireOne(ctx, d)
	} else {
		done, err = s.resolveOne(ctx, pass, d)
	}
	if err != nil {
		s.logger.Info("in-doubt resolution deferred", zap.String("key", d.Key), zap.Error(err))
	}
	if done {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.backoff[d.Key]
	b.delay = min(max(2*b.delay, s.cfg.ResolveEvery), s.cfg.ResolveMaxBackoff)
	b.next = now.Add(b.delay)
	s.backoff[d.Key] = b
	return false
}

// passContext is ctx bounded by the pass deadline and ended as soon as
// this node no longer leads term (checked every LeadershipPoll).
func (s *Svc) passContext(ctx context.Context, term uint64) (context.Context, context.CancelFunc) {
	pass, cancel := context.WithTimeout(ctx, s.cfg.ResolvePassTimeout)
	go func() {
		t := time.NewTicker(LeadershipPoll)
		defer t.Stop()
		for {
			select {
			case <-pass.Done():
				return
			case <-t.C:
				if !s.leads(term) {
					cancel()
					return
				}
			}
		}
	}()
	return pass, cancel
}

// leads reports whether this node still leads term.
func (s *Svc) leads(term uint64) bool {
	ld := s.log.Leadership()
	return ld.IsLeader && ld.Term == term
}

// resolveOne asks the provider about one intent and proposes the answer
// (with ctx). The inquiry runs within pass: unlike a money-moving call it
// is not detached, so the pass's end abandons it. It reports false (retry
// later) for pending answers and errors.
func (s *Svc) resolveOne(ctx, pass context.Context, d InDoubt) (bool, error) {
	req := ProviderRequest{IdempotencyKey: d.Key, Op: OpStatus, PaymentID: d.PaymentID, OrderID: d.OrderID,
		MerchantID: d.MerchantID, Method: d.Method, Amount: d.Amount, Country: d.Country, Capture: d.Capture, ProviderRef: d.ProviderRef}
	res, perr, latency := s.callBounded(pass, d.Provider, d.Method, req, s.providerTimeout(d.Provider))
	defer s.done(d.Key)
	if perr != nil {
		return false, perr
	}
	return s.proposeResolution(ctx, d, res, latency)
}

// proposeResolution proposes the provider's answer to a status inquiry
// about d. It reports false (retry later) for pending answers.
func (s *Svc) proposeResolution(ctx context.Context, d InDoubt, res ProviderResult, latency time.Duration) (bool, error) {
	switch res.Outcome {
	case OutcomeApproved, OutcomeDeclined, OutcomeNotFound:
	case OutcomePending:
		if d.Kind != "payment" || d.Pending {
			return false, nil // known to wait for the shopper: expiry ends it
		}
		// The provider holds the attempt pending (a redirect), but the
		// switch never recorded that: the call timed out (in doubt), or
		// its leader died before the pending answer committed. Recorded
		// now, the payment shows it and its pending expiry runs;
		// unrecorded, nothing ever ended it and the order could take no
		// other payment. Still not settled: the shopper or expiry ends it.
		if _, err := s.propose(ctx, cmdTypePaymentResult, &cmdPaymentResult{At: s.clock.Now(), PaymentID: d.PaymentID, Attempt: d.Attempt,
			Source: sourceResolver, Outcome: outcomePending, Result: res, LatencyMs: latency.Milliseconds()}); err != nil {
			return false, fmt.Errorf("propose pending answer of %s: %w", d.Key, err)
		}
		return false, nil
	default:
		return false, fmt.Errorf("status inquiry for %s: unexpected outcome %q", d.Key, res.Outcome)
	}
	var err error
	if d.Kind == "payment" {
		_, err = s.propose(ctx, cmdTypePaymentResult, &cmdPaymentResult{At: s.clock.Now(), PaymentID: d.PaymentID, Attempt: d.Attempt,
			Source: sourceResolver, Outcome: string(res.Outcome), Result: res, LatencyMs: latency.Milliseconds()})
	} else {
		_, err = s.propose(ctx, cmdTypeOpResult, &cmdOpResult{At: s.clock.Now(), Kind: d.Kind, PaymentID: d.PaymentID, OpID: d.OpID,
			Source: sourceResolver, Outcome: string(res.Outcome), Result: res, LatencyMs: latency.Milliseconds()})
	}
	if err != nil {
		return false, fmt.Errorf("propose resolution of %s: %w", d.Key, err)
	}
	// Settled only if apply closed the intent: an answer it does not book
	// (an approval of another amount than asked) leaves it open, and
	// counting that as settled would skip the backoff and ask the
	// provider again every pass, forever.
	left, err := loadInDoubt(s.store, d.Key)
	if err != nil {
		return false, fmt.Errorf("read in-doubt %s after its resolution: %w", d.Key, err)
	}
	return left == nil, nil
}

// ExpireIdempotency proposes the deletion of idempotency records older
// than the retention, one bounded command at a time. It returns how many
// were deleted. Followers do nothing.
func (s *Svc) ExpireIdempotency(ctx context.Context) (int, error) {
	if !s.log.Leadership().IsLeader {
		return 0, nil
	}
	before := s.clock.Now().Add(-s.cfg.IdempotencyRetention)
	// A cursor past records still in progress needs every member to
	// honour it (apply from VersionProviderAmount); before that, a batch
	// that deleted nothing ends the pass as it always did.
	cursor := s.VersionActive(VersionProviderAmount)
	term := s.log.Leadership().Term
	s.mu.Lock()
	after := s.idemAfter
	if s.idemTerm != term {
		after = nil
	}
	s.mu.Unlock()
	if !cursor {
		after = nil
	}
	total, after, err := s.expireInBatches(ctx, cmdTypeExpireIdem, after, cursor, func(after []byte) any {
		return &cmdExpireIdem{Before: before, Limit: DefaultExpireLimit, After: after}
	})
	s.mu.Lock()
	s.idemAfter, s.idemTerm = after, term
	s.mu.Unlock()
	return total, err
}

// expireInBatches proposes expiry commands of type typ (cmd(after) builds
// one) until a batch scans fewer than DefaultExpireLimit records (the rest
// is not due yet), at most 100 per pass, and returns how many records were
// deleted and where the next pass starts (nil: at the oldest). With cursor
// each command starts after the last key the one before scanned; without,
// a batch that deleted nothing ends the pass (it would scan the same keys
// again).
func (s *Svc) expireInBatches(ctx context.Context, typ string, after []byte, cursor bool, cmd func(after []byte) any) (int, []byte, error) {
	total := 0
	for range 100 {
		res, err := s.propose(ctx, typ, cmd(after))
		if err != nil {
			return total, after, err
		}
		var out expiryResult
		if err := json.Unmarshal(res.Reply.Body, &out); err != nil {
			return total, after, fmt.Errorf("decode %s result: %w", typ, err)
		}
		total += out.Deleted
		switch {
		case out.Scanned < DefaultExpireLimit:
			return total, nil, nil
		case cursor:
			after = out.Last
		case out.Deleted == 0:
			return total, after, nil
		}
	}
	return total, after, nil
}
