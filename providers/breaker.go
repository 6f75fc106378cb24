package providers

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"
	txswitch "github.com/txswitch/txswitch/switch"
)

// Breaker defaults applied to zero fields of txswitch.BreakerConfig.
const (
	DefaultConsecutiveFailures = 5
	DefaultOpenMillis          = 5000
	DefaultHalfOpenMax         = 1
	// DefaultMinRequests applies only when FailureRatio is set.
	DefaultMinRequests = 10
)

// normalizeBreaker fills zero fields with the defaults, so that two configs
// meaning the same breaker compare equal (Registry.Configure keeps a
// breaker's state only when its settings did not change).
func normalizeBreaker(c txswitch.BreakerConfig) txswitch.BreakerConfig {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if c.OpenMillis <= 0 {
		c.OpenMillis = DefaultOpenMillis
	}
	if c.HalfOpenMax == 0 {
		c.HalfOpenMax = DefaultHalfOpenMax
	}
	if c.FailureRatio > 0 && c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.IntervalMillis < 0 {
		c.IntervalMillis = 0
	}
	return c
}

// breakerSettings translates a normalized config. onChange runs under the
// breaker's own lock (gobreaker calls it from inside), so it must only
// record the change, never call back into the breaker.
func breakerSettings(name string, c txswitch.BreakerConfig, onChange func(from, to gobreaker.State)) gobreaker.Settings {
	return gobreaker.Settings{
		Name:        name,
		MaxRequests: c.HalfOpenMax,
		Interval:    time.Duration(c.IntervalMillis) * time.Millisecond,
		Timeout:     time.Duration(c.OpenMillis) * time.Millisecond,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			if n.ConsecutiveFailures >= c.ConsecutiveFailures {
				return true
			}
			return c.FailureRatio > 0 && n.Requests >= c.MinRequests &&
				float64(n.TotalFailures)/float64(n.Requests) >= c.FailureRatio
		},
		OnStateChange: func(_ string, from, to gobreaker.State) { onChange(from, to) },
		// Approvals, declines and pendings are answers: the provider works.
		IsSuccessful: func(err error) bool { return err == nil },
		IsExcluded:   excludedFromBreaker,
	}
}

// excludedFromBreaker tells which errors say nothing about the provider's
// health and so must neither trip nor heal a breaker: the caller giving up,
// requests this adapter could not even build, and 4xx refusals of our own
// mistakes (except 429, which is the provider being overloaded). Every other
// error - definitive ones like connection_refused and http_503 as well as
// in-doubt ones like timeouts - counts as a failure: a provider that times
// out is as unhealthy as one that refuses.
func excludedFromBreaker(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return true
	}
	var pe *txswitch.ProviderError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case CodeInvalidRequest, CodeKeyReused, CodeCanceled:
		return true
	case CodeKeyFenced:
		// A call that reached the PSP after a status inquiry had settled
		// its key: our lateness (a stalled leader), not the PSP's health.
		return true
	case CodeNotSent:
		// Our own connection pool was exhausted: that says nothing about
		// the provider's health, and opening its breaker would turn a
		// burst of our traffic into an outage.
		return true
	case "http_429":
		return false
	}
	return pe.Definitive && strings.HasPrefix(pe.Code, "http_4")
}

func toBreakerState(s gobreaker.State) txswitch.BreakerState {
	switch s {
	case gobreaker.StateOpen:
		return txswitch.BreakerOpen
	case gobreaker.StateHalfOpen:
		return txswitch.BreakerHalfOpen
	default:
		return txswitch.BreakerClosed
	}
}

// breakerProvider is a provider seen through the breaker of one payment
// method.
type breakerProvider struct {
	inner   txswitch.Provider
	cb      *gobreaker.CircuitBreaker[txswitch.ProviderResult]
	notify  func() // delivers state changes recorded during the call
	metrics *metrics
}

var _ txswitch.Provider = (*breakerProvider)(nil)

func (b *breakerProvider) Name() string { return b.inner.Name() }

// Do runs money-moving calls through the breaker. Status inquiries bypass it
// entirely, and are not recorded in it:
//   - they must go on while the breaker is open, because resolving in-doubt
//     payments is exactly what a flaky provider leaves us to do, and
//     rejecting them would keep payments in doubt for no gain;
//   - gobreaker can only record the outcome of a call it admitted, and
//     admitting status calls would let them use up the half-open probe slots
//     (a cheap status GET succeeding says little about whether authorize
//     works, so it must not close the breaker either).
func (b *breakerProvider) Do(ctx context.Context, req txswitch.ProviderRequest) (txswitch.ProviderResult, error) {
	start := time.Now()
	if req.Op == txswitch.OpStatus {
		res, err := b.inner.Do(ctx, req)
		b.metrics.observe(b.inner.Name(), req, res, err, time.Since(start))
		return res, err
	}
	res, err := b.cb.Execute(func() (txswitch.ProviderResult, error) { return b.inner.Do(ctx, req) })
	b.notify()
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		// Nothing was sent: safe to fail over.
		err = &txswitch.ProviderError{
			Provider: b.inner.Name(), Op: req.Op, Definitive: true, Code: CodeBreakerOpen, Err: err,
		}
		b.metrics.observe(b.inner.Name(), req, txswitch.ProviderResult{}, err, -1)
		return txswitch.ProviderResult{}, err
	}
	b.metrics.observe(b.inner.Name(), req, res, err, time.Since(start))
	return res, err
}
