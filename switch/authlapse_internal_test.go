package txswitch

import (
	"testing"
	"time"
)

func TestRoughly(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{7 * 24 * time.Hour, "7 days"},
		{60 * time.Hour, "3 days"}, // 2.5 days round up
		{47 * time.Hour, "47 hours"},
		{2 * time.Hour, "2 hours"},
		{119 * time.Minute, "119 minutes"},
		{2 * time.Minute, "2 minutes"},
		{90 * time.Second, "a minute"},
		{0, "a minute"},
	} {
		if got := roughly(tc.d); got != tc.want {
			t.Errorf("roughly(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// uncapturedRest counts only what an authorization still reserves.
func TestUncapturedRest(t *testing.T) {
	eur := func(v int64) Money { return Money{Value: v, Currency: "EUR"} }
	released := eur(300)
	for _, tc := range []struct {
		name string
		p    paymentRec
		want int64
	}{
		{"authorized", paymentRec{Payment: Payment{Status: PaymentAuthorized, Authorized: eur(1000)}}, 1000},
		{"part captured", paymentRec{Payment: Payment{Status: PaymentAuthorized, Authorized: eur(1000), Captured: eur(400)}}, 600},
		{"rest released", paymentRec{Payment: Payment{Status: PaymentCaptured, Authorized: eur(700), Captured: eur(400), Released: &released}}, 0},
		{"all captured", paymentRec{Payment: Payment{Status: PaymentCaptured, Authorized: eur(1000), Captured: eur(1000)}}, 0},
		{"refunded before the rest was captured", paymentRec{Payment: Payment{Status: PaymentPartiallyRefunded, Authorized: eur(1000), Captured: eur(400), Refunded: eur(400)}}, 600},
		{"being cancelled", paymentRec{Payment: Payment{Status: PaymentAuthorized, Authorized: eur(1000), Cancellation: &Cancellation{Status: "pending"}}}, 0},
		{"cancellation in doubt", paymentRec{Payment: Payment{Status: PaymentAuthorized, Authorized: eur(1000), Cancellation: &Cancellation{Status: PaymentInDoubt}}}, 0},
		{"cancellation failed", paymentRec{Payment: Payment{Status: PaymentAuthorized, Authorized: eur(1000), Cancellation: &Cancellation{Status: "failed"}}}, 1000},
		{"in doubt", paymentRec{Payment: Payment{Status: PaymentInDoubt, Authorized: eur(1000)}}, 0},
		{"cancelled", paymentRec{Payment: Payment{Status: PaymentCancelled, Authorized: eur(1000)}}, 0},
	} {
		if got := uncapturedRest(&tc.p).Value; got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
