package api

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the HTTP layer's Prometheus collectors. Labels are bounded:
// route is the route pattern (or "unmatched"/"invalid"), method one of the
// HTTP methods or "other", code a status code.
type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	forwarded *prometheus.CounterVec
	inFlight  prometheus.Gauge
	// connsRejected counts connections answered 503 (or closed) because
	// the node already served Options.Concurrency connections.
	connsRejected prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txswitch_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"})),
		latency: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "txswitch_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"})),
		forwarded: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txswitch_http_forwarded_total",
			Help: "Writes a follower forwarded to the leader, by result (ok, unreachable, unknown, leader_changed, not_leader, no_leader).",
		}, []string{"result"})),
		inFlight: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "txswitch_http_in_flight_requests",
			Help: "HTTP requests being served.",
		})),
		connsRejected: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "txswitch_http_connections_rejected_total",
			Help: "Connections answered 503 overloaded (or closed) because the node already served its maximum of connections.",
		})),
	}
}

// register registers c, or returns the collector already registered under
// its name, so that several servers (tests, or a node restarting its API)
// can share a registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("api: register metrics: " + err.Error())
	}
	return c
}

func (m *metrics) observe(route, method string, status int, took time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(took.Seconds())
}
