package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/txswitch/txswitch/providers/wire"
	txswitch "github.com/txswitch/txswitch/switch"
)

// Defaults for HTTP calls.
const (
	// DefaultTimeout bounds one call when ProviderConfig.TimeoutMillis is 0.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxConnsPerHost bounds the connection pool per PSP host. When
	// every connection is busy a call waits for one until its deadline; a
	// call that never got a connection was never sent, so it fails
	// definitively ("not_sent"). It is sized for thousands of calls in
	// flight per PSP: at 100 ms provider latency, 64 connections would cap
	// a node at 640 calls/s per PSP and turn the queueing into failures.
	DefaultMaxConnsPerHost = 2048
	dialTimeout            = 3 * time.Second
)

// Error codes of *txswitch.ProviderError produced by this package. The
// Definitive flag, not the code, is what the switch must branch on; codes
// are for timelines, metrics and humans.
const (
	CodeConnectionRefused = "connection_refused" // dial failed (refused, DNS, unreachable): definitive
	CodeNotSent           = "not_sent"           // gave up before the request had a connection: definitive
	CodeBreakerOpen       = "breaker_open"       // breaker rejected the call: definitive
	CodeTimeout           = "timeout"            // deadline once the request had a connection: in doubt
	CodeCanceled          = "canceled"           // caller canceled once the request had a connection: in doubt
	CodeConnectionReset   = "connection_reset"   // connection broke once the request had a connection: in doubt
	CodeMalformed         = "malformed_response" // garbled/oversized/unknown answer: in doubt
	CodeKeyReused         = "idempotency_key_reused"
	// CodeKeyFenced: the PSP refused the request because a status inquiry
	// had already found its key unknown (and promised never to process
	// it). Definitive: nothing was processed, and the switch has settled
	// that attempt as never received.
	CodeKeyFenced      = "idempotency_key_fenced"
	CodeInvalidRequest = "invalid_request" // the adapter could not build the request: definitive
)

// NewHTTPClient returns an HTTP client with a bounded connection pool of
// maxConnsPerHost (DefaultMaxConnsPerHost when <= 0) per PSP, no proxy, no
// redirect following (a 3xx is an answer we classify, not a place to re-send
// a payment to) and no response-header timeout of its own: every call carries
// its deadline in its context.
func NewHTTPClient(maxConnsPerHost int) *http.Client {
	if maxConnsPerHost <= 0 {
		maxConnsPerHost = DefaultMaxConnsPerHost
	}
	tr := &http.Transport{
		DialContext:            (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:           4 * maxConnsPerHost,
		MaxIdleConnsPerHost:    maxConnsPerHost,
		MaxConnsPerHost:        maxConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    dialTimeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

var defaultClient = NewHTTPClient(DefaultMaxConnsPerHost)

// HTTPProvider is the client adapter of one PSP speaking the wire protocol.
// It has no breaker of its own: Registry wraps it. Safe for concurrent use.
type HTTPProvider struct {
	name    string
	base    string // scheme://host[:port][/prefix] without a trailing slash
	timeout time.Duration
	client  *http.Client
}

var _ txswitch.Provider = (*HTTPProvider)(nil)

// NewHTTPProvider returns the adapter for cfg. client may be nil (a shared
// pooled client from NewHTTPClient is used). A BaseURL that does not parse
// is reported by every call as a definitive invalid_request error; Registry
// validates configurations before building adapters.
func NewHTTPProvider(cfg txswitch.ProviderConfig, client *http.Client) *HTTPProvider {
	if client == nil {
		client = defaultClient
	}
	timeout := time.Duration(cfg.TimeoutMillis) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &HTTPProvider{
		name:    cfg.Name,
		base:    strings.TrimRight(cfg.BaseURL, "/"),
		timeout: timeout,
		client:  client,
	}
}

// ValidateBaseURL checks that u is an absolute http(s) URL.
func ValidateBaseURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("parse base_url %q: %w", u, err)
	}
	if (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("base_url %q must be an absolute http(s) URL", u)
	}
	return nil
}

// Name returns the provider's configured name.
func (p *HTTPProvider) Name() string { return p.name }

// Do performs req before the earlier of ctx's deadline and the configured
// timeout. It returns a result or a *txswitch.ProviderError.
//
// Why the classification is the way it is (DESIGN.md invariant 2): the
// switch fails over to another provider only on a definitive error, so a
// definitive error must mean "this PSP certainly did not process the
// request". That is only known when the request never left this process
// (dial failed, no connection became free before the deadline) or when the
// PSP says so explicitly (502/503 with X-Processed: false, a 4xx that
// refuses the request before processing). Everything once the request had a
// connection - a timeout, a reset, any other 5xx, a body we cannot read -
// may hide a charge that happened, so it is in doubt and must be resolved by
// a status inquiry with the same idempotency key, never by charging again.
// When unsure we say "in doubt": a needless status inquiry costs a round
// trip, a wrong "definitive" can cost a double charge.
func (p *HTTPProvider) Do(ctx context.Context, req txswitch.ProviderRequest) (txswitch.ProviderResult, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()

	httpReq, err := p.build(ctx, req)
	if err != nil {
		return txswitch.ProviderResult{}, p.fail(req.Op, true, CodeInvalidRequest, err)
	}
	// The request is handed over when it gets a connection (conns > 0),
	// i.e. just before its bytes may leave. Until then the PSP certainly has nothing. After
	// it we assume the PSP may have the whole request, even if the write
	// failed half-way: WroteRequest would be more precise but is reported
	// from the transport's write goroutine and can race with a read error,
	// whereas GotConn runs on this goroutine before Do can return.
	//
	// net/http re-sends a request that carries an Idempotency-Key on a fresh
	// connection when a reused one broke after the request was written
	// (Request.isReplayable). Each copy gets its own connection, so more
	// than one GotConn means the answer is to a copy, and an earlier copy
	// may have been processed: a "not processed" answer then says nothing
	// about it and is not definitive (classify).
	var conns atomic.Int32
	trace := &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { conns.Add(1) },
	}
	httpReq = httpReq.WithContext(httptrace.WithClientTrace(ctx, trace))

	resp, err := p.client.Do(httpReq)
	if err != nil {
		return txswitch.ProviderResult{}, p.transportError(ctx, req.Op, conns.Load() > 0, fmt.Errorf("%s %s: %w", httpReq.Method, httpReq.URL.Path, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxResponseBody+1))
	if err != nil {
		// The status line arrived, so the request was certainly written.
		return txswitch.ProviderResult{}, p.transportError(ctx, req.Op, true, fmt.Errorf("read %s answer: %w", httpReq.URL.Path, err))
	}
	if len(body) > wire.MaxResponseBody {
		return txswitch.ProviderResult{}, p.fail(req.Op, false, CodeMalformed, fmt.Errorf("answer to %s exceeds %d bytes", httpReq.URL.Path, wire.MaxResponseBody))
	}
	res, err := p.classify(req.Op, resp, body)
	var pe *txswitch.ProviderError
	if conns.Load() > 1 && errors.As(err, &pe) && pe.Definitive && pe.Code != CodeKeyFenced {
		// A fenced key is refused whichever copy arrived first: a status
		// inquiry reported it never received, so no copy was processed.
		pe.Definitive = false
		pe.Err = fmt.Errorf("%w (an answer to a copy the HTTP transport re-sent after a broken connection: an earlier copy may have been processed)", pe.Err)
	}
	return res, err
}

func (p *HTTPProvider) build(ctx context.Context, req txswitch.ProviderRequest) (*http.Request, error) {
	if err := ValidateBaseURL(p.base); err != nil {
		return nil, err
	}
	if !wire.ValidKey(req.IdempotencyKey) {
		return nil, fmt.Errorf("invalid idempotency key %q", req.IdempotencyKey)
	}
	if req.Op == txswitch.OpStatus {
		r, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+wire.StatusPrefix+url.PathEscape(req.IdempotencyKey), nil)
		if err != nil {
			return nil, fmt.Errorf("build status request: %w", err)
		}
		return r, nil
	}
	if !wire.IsMoneyOp(req.Op) {
		return nil, fmt.Errorf("unknown op %q", req.Op)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", req.Op, err)
	}
	if len(b) > wire.MaxRequestBody {
		return nil, fmt.Errorf("%s request of %d bytes exceeds %d", req.Op, len(b), wire.MaxRequestBody)
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+wire.PaymentsPrefix+string(req.Op), bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("build %s request: %w", req.Op, err)
	}
	r.Header.Set("Content-Type", "application/json")
	// net/http may transparently re-send a request carrying this header on a
	// fresh connection when a reused one broke. The PSP deduplicates by it,
	// so the copy cannot charge twice, but its answer may be about the copy
	// alone (Do).
	r.Header.Set(wire.HeaderIdempotencyKey, req.IdempotencyKey)
	return r, nil
}

// transportError classifies a failure without an HTTP answer.
func (p *HTTPProvider) transportError(ctx context.Context, op txswitch.ProviderOp, handedOver bool, err error) error {
	if !handedOver {
		var dnsErr *net.DNSError
		var opErr *net.OpError
		if errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial") {
			return p.fail(op, true, CodeConnectionRefused, err)
		}
		// Deadline or cancellation while waiting for a free connection of
		// the pool, a TLS handshake failure: nothing reached the PSP.
		return p.fail(op, true, CodeNotSent, err)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded || isNetTimeout(err):
		return p.fail(op, false, CodeTimeout, err)
	case errors.Is(err, context.Canceled):
		return p.fail(op, false, CodeCanceled, err)
	default:
		return p.fail(op, false, CodeConnectionReset, err)
	}
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// refusedBeforeProcessing are the 4xx statuses by which a PSP rejects a
// request without acting on it. Other 4xx (409 "in progress", 422 "key
// reused", anything unknown) may coexist with an earlier charge under the
// same key, so they are in doubt.
var refusedBeforeProcessing = map[int]bool{
	http.StatusBadRequest: true, http.StatusUnauthorized: true, http.StatusForbidden: true,
	http.StatusNotFound: true, http.StatusMethodNotAllowed: true, http.StatusRequestEntityTooLarge: true,
	http.StatusUnsupportedMediaType: true, http.StatusTooManyRequests: true,
}

func (p *HTTPProvider) classify(op txswitch.ProviderOp, resp *http.Response, body []byte) (txswitch.ProviderResult, error) {
	status := resp.StatusCode
	code := "http_" + strconv.Itoa(status)
	switch {
	case status >= 200 && status < 300:
		var res txswitch.ProviderResult
		if err := json.Unmarshal(body, &res); err != nil {
			return txswitch.ProviderResult{}, p.fail(op, false, CodeMalformed, fmt.Errorf("decode %d answer: %w", status, err))
		}
		if !wire.ValidOutcome(op, res.Outcome) {
			return txswitch.ProviderResult{}, p.fail(op, false, CodeMalformed, fmt.Errorf("outcome %q is not a valid answer to %s", res.Outcome, op))
		}
		return res, nil
	case status >= 400 && status < 500:
		// Some PSPs answer a decline with 402/4xx and a result body: that is
		// a definitive refusal by the issuer, i.e. an ordinary result.
		var res txswitch.ProviderResult
		if json.Unmarshal(body, &res) == nil && res.Outcome == txswitch.OutcomeDeclined {
			return res, nil
		}
		detail := errorDetail(body)
		if detail.Code == wire.CodeIdempotencyKeyReused {
			return txswitch.ProviderResult{}, p.fail(op, false, CodeKeyReused, fmt.Errorf("PSP answered %d: %s", status, detail.Message))
		}
		if status == http.StatusConflict && detail.Code == wire.CodeIdempotencyKeyFenced {
			return txswitch.ProviderResult{}, p.fail(op, true, CodeKeyFenced, fmt.Errorf("PSP answered %d: %s", status, detail.Message))
		}
		return txswitch.ProviderResult{}, p.fail(op, refusedBeforeProcessing[status], code, fmt.Errorf("PSP answered %d %s: %s", status, detail.Code, detail.Message))
	case (status == http.StatusServiceUnavailable || status == http.StatusBadGateway) &&
		strings.EqualFold(resp.Header.Get(wire.HeaderProcessed), "false"):
		detail := errorDetail(body)
		return txswitch.ProviderResult{}, p.fail(op, true, code, fmt.Errorf("PSP answered %d without processing: %s %s", status, detail.Code, detail.Message))
	default:
		// Any other 5xx, and 1xx/3xx: the request arrived and we cannot
		// tell what the PSP did with it.
		return txswitch.ProviderResult{}, p.fail(op, false, code, fmt.Errorf("PSP answered %d", status))
	}
}

func errorDetail(body []byte) wire.ErrorDetail {
	var eb wire.ErrorBody
	if json.Unmarshal(body, &eb) != nil {
		return wire.ErrorDetail{}
	}
	return eb.Error
}

func (p *HTTPProvider) fail(op txswitch.ProviderOp, definitive bool, code string, err error) *txswitch.ProviderError {
	return &txswitch.ProviderError{Provider: p.name, Op: op, Definitive: definitive, Code: code, Err: err}
}
