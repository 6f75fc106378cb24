package providers

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Provider metrics answer "is this provider down, slow or declining?"
// without asking it, per provider, method and operation, on every node
// that calls providers (the leader, and a node draining its calls after a
// handover). Breaker states are the leader's: a node that stops leading
// forgets its breakers (Registry.ForgetBreakers). Labels are bounded: providers and methods come from the
// routing configuration (at most MaxMethods per provider), results are an
// outcome or one of this package's error codes (an http_NNN code carries
// the PSP's status).
const (
	metricCalls    = "txswitch_provider_calls_total"
	metricInDoubt  = "txswitch_provider_in_doubt_total"
	metricDuration = "txswitch_provider_call_duration_seconds"
	metricBreaker  = "txswitch_provider_breaker_state"
	metricChanges  = "txswitch_provider_breaker_transitions_total"
)

type metrics struct {
	calls    *prometheus.CounterVec
	inDoubt  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, r *Registry) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricCalls,
			Help: "Provider calls by provider, method, operation and result: the outcome (approved, declined, pending), or the error code of a call without one (breaker_open, connection_refused: not sent; timeout, connection_reset, malformed_response: in doubt; http_NNN: the PSP's status, processed or not: see txswitch_provider_in_doubt_total).",
		}, []string{"provider", "method", "op", "result"}),
		inDoubt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricInDoubt,
			Help: "Provider calls that ended without an answer and may have been processed (the same http_NNN code can be either): each leaves its payment or operation in doubt until a status inquiry settles it.",
		}, []string{"provider", "method", "op"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricDuration,
			Help:    "Time a provider call took, by provider and operation (calls a breaker refused are not timed).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"provider", "op"}),
	}
	reg.MustRegister(m.calls, m.inDoubt, m.duration, breakerCollector{r})
	return m
}

// observe records one call; took < 0 means it was never sent.
func (m *metrics) observe(provider string, req txswitch.ProviderRequest, res txswitch.ProviderResult, err error, took time.Duration) {
	if m == nil {
		return
	}
	result := string(res.Outcome)
	if err != nil {
		result = "error"
		inDoubt := true // an error of unknown kind promises nothing
		var pe *txswitch.ProviderError
		if errors.As(err, &pe) {
			inDoubt = !pe.Definitive
			if pe.Code != "" {
				result = pe.Code
			}
		}
		if inDoubt {
			m.inDoubt.WithLabelValues(provider, req.Method, string(req.Op)).Inc()
		}
	}
	m.calls.WithLabelValues(provider, req.Method, string(req.Op), result).Inc()
	if took >= 0 {
		m.duration.WithLabelValues(provider, string(req.Op)).Observe(took.Seconds())
	}
}

// breakerCollector reads every breaker at scrape time, so the state shown
// is the breaker's own (an open breaker whose timeout has passed shows
// half-open), and transitions between two scrapes still show in the count.
type breakerCollector struct{ r *Registry }

var (
	breakerStateDesc = prometheus.NewDesc(metricBreaker,
		"Breaker of a provider for a payment method: 0 closed, 1 half-open (probing), 2 open (the method's calls skip this provider).",
		[]string{"provider", "method"}, nil)
	breakerChangesDesc = prometheus.NewDesc(metricChanges,
		"Transitions of a provider's breaker for a payment method since the node started (or last stopped leading, or the provider's breaker settings changed): a count that moves fast is a flapping provider.",
		[]string{"provider", "method"}, nil)
)

func (c breakerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- breakerStateDesc
	ch <- breakerChangesDesc
}

func (c breakerCollector) Collect(ch chan<- prometheus.Metric) {
	for provider, methods := range c.r.Views() {
		for method, v := range methods {
			ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, breakerValue(v.State), provider, method)
			ch <- prometheus.MustNewConstMetric(breakerChangesDesc, prometheus.CounterValue, float64(v.Changes), provider, method)
		}
	}
}

func breakerValue(s txswitch.BreakerState) float64 {
	switch s {
	case txswitch.BreakerHalfOpen:
		return 1
	case txswitch.BreakerOpen:
		return 2
	}
	return 0
}
