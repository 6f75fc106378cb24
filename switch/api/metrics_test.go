package api

import (
	"strings"
	"testing"
)

func scrape(t *testing.T, n *testNode) string {
	t.Helper()
	resp := n.do(t, request{"GET", "/metrics", nil, ""})
	if resp.status != 200 {
		t.Fatalf("metrics: %d %s", resp.status, resp.body)
	}
	return string(resp.body)
}

func TestMetrics(t *testing.T) {
	n := newTestNode(t, func(o *Options) { o.Registry = nil })
	for range 2 {
		n.do(t, request{"POST", "/v1/orders", mh(), orderBody})
	}
	n.do(t, request{"GET", "/v1/orders/ord_1", mh(), ""})
	n.do(t, request{"GET", "/v1/orders/ord_2/timeline", mh(), ""})
	n.do(t, request{"GET", "/nope/secret-path", nil, ""})
	n.do(t, request{"POST", "/v1/orders", nil, orderBody})
	out := scrape(t, n)
	for _, want := range []string{
		`txswitch_http_requests_total{code="201",method="POST",route="/v1/orders"} 2`,
		`txswitch_http_requests_total{code="401",method="POST",route="/v1/orders"} 1`,
		`txswitch_http_requests_total{code="200",method="GET",route="/v1/orders/{id}"} 1`,
		`txswitch_http_requests_total{code="200",method="GET",route="/v1/orders/{id}/timeline"} 1`,
		`txswitch_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`txswitch_http_request_duration_seconds_count{route="/v1/orders"} 3`,
		`txswitch_http_in_flight_requests 1`, // the scrape itself
		`go_goroutines`,                      // nil registry → Go collectors
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(out, "ord_1") || strings.Contains(out, "secret-path") {
		t.Error("raw paths leaked into labels")
	}
}

func TestMetricsSharedRegistry(t *testing.T) {
	a := newTestNode(t, nil)
	b := newTestNode(t, func(o *Options) { o.Registry = a.reg })
	a.do(t, request{"GET", "/healthz", nil, ""})
	b.do(t, request{"GET", "/healthz", nil, ""})
	if !strings.Contains(scrape(t, a), `txswitch_http_requests_total{code="200",method="GET",route="/healthz"} 2`) {
		t.Error("two servers on one registry do not share the counters")
	}
}
