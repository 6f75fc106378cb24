package txswitch

import (
	"fmt"
	"time"
)

// CodeAmountMismatch marks a result the switch did not book because the
// provider approved another amount than it was asked for.
const CodeAmountMismatch = "amount_mismatch"

// amountMismatch reports whether an approval carries an amount, as the
// provider reports it, other than want (cluster version v from
// VersionProviderAmount on). A provider that does not say is taken at its
// word: the amount asked for.
func amountMismatch(v int, outcome string, got *Money, want Money) bool {
	return v >= VersionProviderAmount && outcome == outcomeApproved && got != nil &&
		(got.Value != want.Value || got.Currency != want.Currency)
}

// checkAmount turns a result approving another amount than d asked for
// (amountMismatch) into an in-doubt one, through outcome, errCode and
// errMsg, the result command's fields, and flags d (flagAmountMismatch).
// first is false when d was flagged before.
func (ac *applyCtx) checkAmount(o *orderRec, p *paymentRec, d *inDoubtRec, at time.Time, got *Money, providerRef string, outcome, errCode, errMsg *string) (mismatch, first bool, err error) {
	v, err := ac.version()
	if err != nil || !amountMismatch(v, *outcome, got, d.Amount) {
		return false, false, err
	}
	if d.Kind == "payment" && d.ProviderRef == "" {
		// The provider's reference of the odd approval: an operator who
		// settles the attempt as approved books it (manualresolve.go).
		d.ProviderRef = providerRef
	}
	if first, err = ac.flagAmountMismatch(o, p, d, at, *got); err != nil {
		return true, false, err
	}
	*outcome, *errCode, *errMsg = outcomeInDoubt, CodeAmountMismatch, "the provider approved another amount than asked"
	return true, first, nil
}

// flagAmountMismatch records on the timeline, once per intent d, that its
// provider approved got instead of d.Amount. The caller keeps the intent in
// doubt: booking either amount could make the switch's money differ from
// the provider's, and only someone reconciling with the provider can tell
// which is right (a partial approval, a currency conversion, a bug). It
// reports false when d was flagged before (nothing written).
func (ac *applyCtx) flagAmountMismatch(o *orderRec, p *paymentRec, d *inDoubtRec, at time.Time, got Money) (bool, error) {
	if d.AmountMismatch {
		return false, nil
	}
	d.AmountMismatch = true
	what := d.Kind
	if what == "payment" {
		what = "authorization"
	}
	return true, ac.event(o, at, "amount_mismatch", p.ID,
		fmt.Sprintf("%s approved the %s under key %s for %s, not the %s asked for; the switch books neither and keeps it in doubt: reconcile it with %s.",
			d.Provider, what, d.Key, FormatMoney(got), FormatMoney(d.Amount), d.Provider),
		map[string]any{"provider": d.Provider, "key": d.Key, "op": d.Kind, "asked": d.Amount, "reported": got})
}

// paymentOf is the payment of ps with id (nil if none).
func paymentOf(ps []*paymentRec, id string) *paymentRec {
	for _, p := range ps {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// opInDoubt reports whether a capture, refund or cancellation of p is in
// doubt.
func opInDoubt(p *paymentRec) bool {
	for _, c := range p.Captures {
		if c.Status == PaymentInDoubt {
			return true
		}
	}
	for _, r := range p.Refunds {
		if r.Status == PaymentInDoubt {
			return true
		}
	}
	return p.Cancellation != nil && p.Cancellation.Status == PaymentInDoubt
}
