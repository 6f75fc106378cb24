package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Client bounds.
const (
	clientTimeout  = 8 * time.Second
	maxBody        = 4 << 20
	retryBackoff   = 100 * time.Millisecond
	maxRetryBackof = time.Second
	// clientIdleTimeout closes unused keep-alive connections (see newClient).
	clientIdleTimeout = 500 * time.Millisecond
)

// client is the recording HTTP client of one scenario: every attempt is
// in the History, whatever happens to it.
type client struct {
	env     *env
	http    *http.Client
	hist    *History
	rr      atomic.Uint64
	retries int
	// storm is the number of extra concurrent copies of every write.
	storm int
}

func newClient(e *env, retries, storm int) *client {
	// A short idle timeout: net/http dials spare connections that may never
	// carry a request, and a node's API shutdown waits for such never-used
	// connections until its drain timeout (5s), which delays its restart
	// (and, for a stop that drains before raft stops, the election).
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: clientIdleTimeout}
	return &client{env: e, http: &http.Client{Timeout: clientTimeout, Transport: tr}, hist: e.hist, retries: retries, storm: storm}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// req is one logical request.
type req struct {
	flowID int
	flow   string
	op     string
	method string
	path   string
	key    string
	target string
	bad    bool
	body   any    // marshalled as JSON
	raw    []byte // sent as is when body is nil
	auth   string // "" uses the merchant key
	// once sends a single attempt, never retried (a flow's read-back:
	// evidence, not load).
	once bool
}

// resp is the final answer of a logical request.
type resp struct {
	status int
	body   []byte
	seq    int
}

// do sends r, retrying (same idempotency key) on no answer, 503 and 429,
// as a gateway would; with a storm, writes also go out several times at
// once. It returns the last attempt's answer.
func (c *client) do(ctx context.Context, r req) resp {
	payload := r.raw
	if r.body != nil {
		payload, _ = json.Marshal(r.body)
	}
	write := r.method != http.MethodGet
	if r.once {
		return c.once(ctx, r, payload, 0)
	}
	if write && c.storm > 0 && r.key != "" {
		var wg sync.WaitGroup
		for range c.storm {
			wg.Go(func() {
				defer c.env.recovered("a concurrent copy of " + r.op)
				c.once(ctx, r, payload, 0)
			})
		}
		defer wg.Wait()
	}
	backoff := retryBackoff
	var last resp
	for attempt := 0; attempt <= c.retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return last
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxRetryBackof)
		}
		last = c.once(ctx, r, payload, attempt)
		if !retryable(last) {
			return last
		}
		// A write without an idempotency key is never retried: a retry
		// could execute it twice.
		if write && r.key == "" {
			return last
		}
	}
	return last
}

func (c *client) once(ctx context.Context, r req, payload []byte, attempt int) resp {
	node := c.env.pickNode(c.rr.Add(1))
	call := Call{FlowID: r.flowID, Flow: r.flow, Op: r.op, Method: r.method, Path: r.path, Node: node, Key: r.key,
		Target: r.target, Bad: r.bad, Attempt: attempt, Start: time.Now()}
	if len(payload) > 0 && json.Valid(payload) {
		call.Req = append(json.RawMessage(nil), payload...)
	} else if len(payload) > 0 {
		call.Req, _ = json.Marshal(string(payload))
	}
	var status int
	var body []byte
	if node == "" {
		call.Err = "no running node"
	} else {
		var rd io.Reader
		if len(payload) > 0 {
			rd = bytes.NewReader(payload)
		}
		hr, err := http.NewRequestWithContext(ctx, r.method, "http://"+node+r.path, rd)
		if err == nil {
			auth := r.auth
			if auth == "" {
				auth = c.env.t.apiKey()
			}
			hr.Header.Set("Authorization", "Bearer "+auth)
			if len(payload) > 0 {
				hr.Header.Set("Content-Type", "application/json")
			}
			if r.key != "" {
				hr.Header.Set("Idempotency-Key", r.key)
			}
			var hresp *http.Response
			if hresp, err = c.http.Do(hr); err == nil {
				body, err = io.ReadAll(io.LimitReader(hresp.Body, maxBody))
				hresp.Body.Close()
				status = hresp.StatusCode
			}
		}
		if err != nil {
			call.Err = err.Error()
			status = 0
		}
	}
	call.End = time.Now()
	call.Status = status
	if len(body) > 0 && json.Valid(body) {
		call.Body = body
	} else if len(body) > 0 {
		call.Body, _ = json.Marshal(string(body))
	}
	seq := c.hist.addCall(call)
	return resp{status: status, body: body, seq: seq}
}

// retryable: no answer, 503, 429, or 409 "the same key is in progress"
// (a concurrent copy of this request is being executed: asking again
// later returns its stored answer).
func retryable(r resp) bool {
	switch r.status {
	case 0, http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return true
	case http.StatusConflict:
		return errorCode(r.body) == "idempotency_request_in_progress"
	}
	return false
}
