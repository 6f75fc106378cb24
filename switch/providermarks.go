package txswitch

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// A provider that approved a payment holds money the switch may still
// move there: the capture on shipment, the refund on a return months
// later, the release of what will not ship. Those go to the provider the
// payment names, so a configuration without it turned each into a
// definitive provider_not_configured failure, and an authorization could
// expire at the provider while someone found out why. From cluster
// version 11 (VersionFollowUps) apply marks a provider at its first
// approved payment, and a configuration that drops a marked provider is
// refused (409 provider_has_payments, by PutConfig and again by apply, so
// an approval committed between the two cannot slip through). Taking the
// provider out of every route stops new payments there and keeps its
// follow-ups working; its base_url, timeouts and breaker may change.
//
// A mark is never removed: whether a payment can still be refunded is the
// provider's rule and the merchant's business, not the switch's, and a
// provider entry without routes costs nothing.

// CodeProviderHasPayments refuses a configuration without a provider
// that approved payments.
const CodeProviderHasPayments = "provider_has_payments"

// providerMark is the value of a provider's mark.
type providerMark struct {
	// PaymentID and At are the first payment approved there. Both are
	// empty when the mark was set as the cluster moved to
	// VersionFollowUps, for a provider configured then: its payments
	// from before were not tracked.
	PaymentID string    `json:"payment_id,omitempty"`
	At        time.Time `json:"at"`
}

func providerMarkKey(provider string) []byte { return []byte(prefixProviderMark + provider) }

// markProvider records that provider approved payment paymentID at at,
// unless it did before; below VersionFollowUps it writes nothing (an
// older member would not, and the states would differ).
func (ac *applyCtx) markProvider(provider, paymentID string, at time.Time) error {
	if ac.bs.marked[provider] {
		return nil
	}
	v, err := ac.version()
	if err != nil || v < VersionFollowUps {
		return err
	}
	if err := ac.putMark(provider, providerMark{PaymentID: paymentID, At: at}); err != nil {
		return err
	}
	if ac.bs.marked == nil {
		ac.bs.marked = map[string]bool{}
	}
	ac.bs.marked[provider] = true
	return nil
}

// markConfiguredProviders marks every provider of the stored
// configuration, as the cluster moves to VersionFollowUps: any of
// them may hold payments approved before, which nobody marked.
func (ac *applyCtx) markConfiguredProviders() error {
	var cfg RoutingConfig
	if _, err := getJSON(ac.b, []byte(keyConfig), &cfg); err != nil {
		return err
	}
	for _, p := range cfg.Providers {
		if err := ac.putMark(p.Name, providerMark{}); err != nil {
			return err
		}
	}
	return nil
}

// putMark writes m as provider's mark unless it has one: the first
// approval stays the one named.
func (ac *applyCtx) putMark(provider string, m providerMark) error {
	key := providerMarkKey(provider)
	_, err := ac.b.Get(key)
	switch {
	case errors.Is(err, ErrNotFound):
		return ac.putJSON(key, m)
	case err != nil:
		return fmt.Errorf("get %q: %w", key, err)
	}
	return nil
}

// paymentsKeepProviders refuses cfg (409 provider_has_payments) if it
// drops a provider that carries a mark in r: the first one in key order,
// so every node refuses the same command with the same error.
func paymentsKeepProviders(r Reader, cfg *RoutingConfig) (*Error, error) {
	kept := make(map[string]bool, len(cfg.Providers))
	for _, p := range cfg.Providers {
		kept[p.Name] = true
	}
	var (
		refused *Error
		derr    error
	)
	start, end := prefixRange(prefixProviderMark)
	err := r.Scan(start, end, func(k, v []byte) bool {
		name := string(k[len(prefixProviderMark):])
		if kept[name] {
			return true
		}
		var m providerMark
		if err := json.Unmarshal(v, &m); err != nil {
			derr = fmt.Errorf("decode %q: %w", k, err)
			return false
		}
		refused = NewError(KindConflict, CodeProviderHasPayments, "providers", m.refusal(name))
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("scan provider marks: %w", err)
	}
	return refused, derr
}

func (m providerMark) refusal(provider string) string {
	why := fmt.Sprintf("provider %s approved payments (the first, %s, on %s)", provider, m.PaymentID, m.At.UTC().Format(time.RFC3339))
	if m.PaymentID == "" {
		why = fmt.Sprintf("provider %s was configured when the cluster moved to version %d and may hold payments approved before", provider, VersionFollowUps)
	}
	return why + ": their captures, refunds and cancellations go to it, so it stays configured; take it out of every method's routes to stop new payments there (its base_url, timeouts and breaker may change)"
}

// ProviderPayments is a provider that carries a mark: it approved
// payments, so a configuration without it is refused.
type ProviderPayments struct {
	Provider string `json:"provider"`
	// FirstPayment and At are its first approved payment; both are empty
	// for a provider marked as the cluster moved to VersionFollowUps.
	FirstPayment string     `json:"first_payment,omitempty"`
	At           *time.Time `json:"at,omitempty"`
}

// maxProviderMarksRead bounds ProvidersWithPayments; a configuration holds
// far fewer providers.
const maxProviderMarksRead = 1000

// ProvidersWithPayments lists the marked providers in name order, from
// this node's replica: what an operator planning a configuration change
// must keep.
func (s *Svc) ProvidersWithPayments() ([]ProviderPayments, error) {
	var (
		out  []ProviderPayments
		derr error
	)
	start, end := prefixRange(prefixProviderMark)
	err := s.store.Scan(start, end, func(k, v []byte) bool {
		var m providerMark
		if err := json.Unmarshal(v, &m); err != nil {
			derr = fmt.Errorf("decode %q: %w", k, err)
			return false
		}
		pp := ProviderPayments{Provider: string(k[len(prefixProviderMark):]), FirstPayment: m.PaymentID}
		if !m.At.IsZero() {
			at := m.At
			pp.At = &at
		}
		out = append(out, pp)
		return len(out) < maxProviderMarksRead
	})
	if err != nil {
		return nil, fmt.Errorf("scan provider marks: %w", err)
	}
	return out, derr
}
