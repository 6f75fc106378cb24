package api

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	txswitch "github.com/txswitch/txswitch/switch"
)

// forwardedHeaders are the request headers the leader needs to serve a
// forwarded request exactly as if it had been sent there directly.
var forwardedHeaders = []string{"Authorization", hdrIdemKey, "Content-Type", hdrSignature}

// copiedResponseHeaders are the leader's response headers passed back to
// the caller along with its status and body.
var copiedResponseHeaders = []string{hdrRetryAfter, hdrLeader, "Allow", "WWW-Authenticate"}

// maxLeaderClients bounds the cached per-leader clients; leadership moves
// between a handful of nodes, so the cache is reset when it fills.
const maxLeaderClients = 8

// forwarder proxies writes to the leader, one fasthttp.HostClient per
// leader address.
type forwarder struct {
	maxConns int
	timeout  time.Duration

	mu      sync.Mutex
	clients map[string]*fasthttp.HostClient
}

func newForwarder(maxConns int, timeout time.Duration) *forwarder {
	return &forwarder{maxConns: maxConns, timeout: timeout, clients: map[string]*fasthttp.HostClient{}}
}

// dialError marks a failure to connect: the leader cannot have received the
// request.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial leader: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func (f *forwarder) client(addr string) *fasthttp.HostClient {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[addr]; ok {
		return c
	}
	if len(f.clients) >= maxLeaderClients {
		for a, c := range f.clients {
			c.CloseIdleConnections()
			delete(f.clients, a)
		}
	}
	hostPort, tls := addr, false
	if rest, ok := strings.CutPrefix(addr, "https://"); ok {
		hostPort, tls = rest, true
	} else if rest, ok := strings.CutPrefix(addr, "http://"); ok {
		hostPort = rest
	}
	hostPort = strings.TrimSuffix(hostPort, "/")
	c := &fasthttp.HostClient{
		Addr:  fasthttp.AddMissingPort(hostPort, tls),
		IsTLS: tls,
		Name:  "txswitch-forward",
		DialTimeout: func(a string, timeout time.Duration) (net.Conn, error) {
			if timeout <= 0 || timeout > 2*time.Second {
				timeout = 2 * time.Second
			}
			conn, err := fasthttp.DialTimeout(a, timeout)
			if err != nil {
				return nil, &dialError{err}
			}
			return conn, nil
		},
		MaxConns:            f.maxConns,
		MaxConnWaitTimeout:  time.Second,
		MaxIdleConnDuration: 30 * time.Second,
		ReadTimeout:         f.timeout,
		WriteTimeout:        5 * time.Second,
		MaxResponseBodySize: maxForwardResponse,
		// Never resend: a write that reached the leader must not run twice
		// because of us; the caller retries with its Idempotency-Key.
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		NoDefaultUserAgentHeader:  true,
	}
	f.clients[addr] = c
	return c
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, c := range f.clients {
		c.CloseIdleConnections()
		delete(f.clients, a)
	}
}

// forward proxies a validated write to the leader and relays its answer;
// decoded is the request body as the route decoded it.
func (s *Server) forward(rc *reqCtx, body []byte, decoded any) {
	fc := rc.fc
	if len(fc.Request.Header.Peek(hdrForwarded)) > 0 {
		// Forwarded once already: the sender thought we lead. Forwarding
		// again could loop while views of leadership disagree.
		s.metrics.forwarded.WithLabelValues("not_leader").Inc()
		s.writeErr(rc, txswitch.NewError(503, "not_leader", "", "this node is not the leader; retry shortly"))
		return
	}
	lead, changed, addr, ok := s.forwardTarget()
	if !ok || addr == "" {
		s.metrics.forwarded.WithLabelValues("no_leader").Inc()
		s.writeErr(rc, txswitch.NewError(503, "no_leader", "", "no leader is known; retry shortly"))
		return
	}

	client := s.fwd.client(addr)
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	release := func() {
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	req.Header.SetMethodBytes(fc.Method())
	// The path and query alone: a client may send the target in absolute
	// form (https://host/path), which the leader needs no more than the
	// plain-HTTP client that forwards it can send.
	target := append([]byte(nil), fc.URI().PathOriginal()...)
	if q := fc.URI().QueryString(); len(q) > 0 {
		target = append(append(target, '?'), q...)
	}
	req.SetRequestURIBytes(target)
	req.Header.SetHost(client.Addr)
	for _, h := range forwardedHeaders {
		if v := fc.Request.Header.Peek(h); len(v) > 0 {
			req.Header.SetBytesV(h, v)
		}
	}
	req.Header.Set(hdrForwarded, s.opts.NodeID)
	req.Header.Set(hdrRequestID, rc.requestID)
	// A copy: the call may outlive this handler (see below), and body is
	// the server's buffer, reused for the connection's next request.
	req.SetBody(body)

	// The call runs on its own goroutine so that we can stop waiting when
	// another node takes over: a leader frozen (a stopped process, a
	// stalled disk) holds the request until the forward timeout, while its
	// successor could already answer the caller's retry.
	done := make(chan error, 1)
	go func() { done <- client.DoTimeout(req, resp, s.fwd.timeout) }()
	var err error
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-changed:
			var now txswitch.Leadership
			now, changed = s.opts.Cluster.LeadershipWatch()
			if !replaced(lead, now) {
				continue
			}
			// The call still owns req and resp until it returns.
			go func() { <-done; release() }()
			if rc.route.leaderMoved != nil {
				if r, ok := rc.route.leaderMoved(decoded, now); ok {
					s.metrics.forwarded.WithLabelValues("ok").Inc()
					s.writeReply(rc, r)
					return
				}
			}
			// The old leader may have logged the request, and a log entry
			// that reached a majority is committed by its successor: the
			// outcome is unknown, and a retry under the same
			// Idempotency-Key, served by the new leader, tells it.
			s.metrics.forwarded.WithLabelValues("leader_changed").Inc()
			s.log.Info("stopped waiting for a replaced leader", zap.String("request_id", rc.requestID),
				zap.String("leader", addr), zap.Uint64("term", lead.Term),
				zap.Uint64("new_leader", now.LeaderID), zap.Uint64("new_term", now.Term))
			s.writeErr(rc, unanswered(rc, "the leader was replaced while this request waited for it"))
			return
		}
	}
	defer release()
	if err != nil {
		var de *dialError
		var e *txswitch.Error
		if errors.As(err, &de) || errors.Is(err, fasthttp.ErrNoFreeConns) {
			s.metrics.forwarded.WithLabelValues("unreachable").Inc()
			e = txswitch.NewError(503, "leader_unreachable", "", "the leader cannot be reached; retry shortly")
		} else {
			s.metrics.forwarded.WithLabelValues("unknown").Inc()
			e = unanswered(rc, "the leader did not answer in time")
		}
		s.log.Warn("forward to leader failed", zap.String("request_id", rc.requestID),
			zap.String("leader", addr), zap.String("route", rc.route.pattern), zap.Error(fmt.Errorf("forward: %w", err)))
		s.writeErr(rc, e)
		return
	}
	s.metrics.forwarded.WithLabelValues("ok").Inc()
	fc.SetStatusCode(resp.StatusCode())
	if ct := resp.Header.ContentType(); len(ct) > 0 {
		fc.Response.Header.SetContentTypeBytes(ct)
	}
	for _, h := range copiedResponseHeaders {
		if v := resp.Header.Peek(h); len(v) > 0 {
			fc.Response.Header.SetBytesV(h, v)
		}
	}
	fc.SetBody(resp.Body())
}

// forwardTarget reads the leadership, its change channel and the leader's
// API address so that the address belongs to that leadership: were the
// leader to change between the two reads, a forward to the new leader
// would look like one to a replaced leader.
func (s *Server) forwardTarget() (txswitch.Leadership, <-chan struct{}, string, bool) {
	if s.opts.Cluster == nil {
		return txswitch.Leadership{}, nil, "", false
	}
	for {
		lead, changed := s.opts.Cluster.LeadershipWatch()
		addr, ok := s.opts.Cluster.LeaderAPIAddr()
		select {
		case <-changed:
			continue
		default:
			return lead, changed, addr, ok
		}
	}
}

// replaced reports whether now names another leader, at a later term, than
// the one a request was forwarded to. While no leader is known (an
// election), or the same node leads again, the request waits on.
func replaced(forwardedTo, now txswitch.Leadership) bool {
	return now.LeaderID != 0 && now.LeaderID != forwardedTo.LeaderID && now.Term > forwardedTo.Term
}

// unanswered is the answer to a forward the leader did not answer: for a
// write the outcome is unknown (the leader may have logged it); a read
// changed nothing and is simply asked again.
func unanswered(rc *reqCtx, why string) *txswitch.Error {
	if rc.route.write {
		return outcomeUnknown()
	}
	return txswitch.NewError(503, txswitch.CodeLeaderUnavailable, "", why+"; retry")
}
