package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.uber.org/zap"

	txswitch "github.com/txswitch/txswitch/switch"
)

// ClusterInfo is this node's view of the cluster, as the API needs it.
type ClusterInfo interface {
	// Leadership reports whether this node leads.
	Leadership() txswitch.Leadership
	// LeadershipWatch is Leadership and a channel closed at its next
	// change, so that a forwarded request can stop waiting for a leader
	// that another one has replaced.
	LeadershipWatch() (txswitch.Leadership, <-chan struct{})
	// LeaderAPIAddr is the leader's API address (host:port, or an
	// http:// URL) when a leader is known.
	LeaderAPIAddr() (string, bool)
	// Ready is nil when this node can serve writes or forward them.
	Ready() error
	// Removed reports whether this node was removed from the cluster. It
	// then serves no request but its admin status (how an operator sees
	// why), and is not ready.
	Removed() bool
}

// AdminOps is cluster administration. Errors that are the caller's mistake
// (unknown member, bad address) must be *txswitch.Error; anything else is
// answered 500 and logged.
type AdminOps interface {
	// Status is this node's view of the cluster, served as JSON.
	Status(ctx context.Context) (any, error)
	// AddMember adds a node and returns its member id.
	// versions are what the node's binary runs (nil: not said).
	AddMember(ctx context.Context, raftAddr, apiAddr string, versions *txswitch.VersionRange) (uint64, error)
	RemoveMember(ctx context.Context, id uint64) error
	TransferLeader(ctx context.Context, to uint64) error
}

// Options configures a Server. Only Service is required.
type Options struct {
	Service txswitch.Service
	// Cluster is nil for a single node that always leads.
	Cluster ClusterInfo
	// Admin is nil when cluster administration is not available; its
	// routes (status, members, leader) then answer 404.
	Admin AdminOps
	// AdminToken authorizes the admin API (Authorization: Bearer <token>).
	// Empty disables the whole admin API (404).
	AdminToken string
	// ProviderSecrets keys the HMAC-SHA256 of provider notifications, per
	// provider name. A provider without a secret cannot notify.
	ProviderSecrets map[string]string
	// NodeID names this node in X-Txswitch-Forwarded (default: hostname).
	NodeID string

	// MaxBodyBytes bounds merchant and notification bodies (default 64 KiB).
	MaxBodyBytes int
	// MaxAdminBodyBytes bounds PUT /v1/admin/config (default 1 MiB): a
	// routing configuration with many merchants outgrows MaxBodyBytes.
	MaxAdminBodyBytes int
	// RequestTimeout bounds one call into the Service (default 10 s).
	RequestTimeout time.Duration
	// ForwardGrace is added to RequestTimeout for a forwarded request, so
	// the leader's own timeout answer arrives before ours fires (default 2 s).
	ForwardGrace time.Duration
	// ForwardMaxConns bounds the connections to the leader (default 256);
	// past it a forward waits up to 1 s for a connection, then 503.
	ForwardMaxConns int

	// fasthttp.Server limits.
	// Concurrency bounds the connections served at once (default 10000;
	// fasthttp serves a keep-alive connection on one worker for its life).
	// Past it a new connection is answered 503 overloaded with Retry-After
	// and closed (connlimit.go).
	Concurrency int

	ReadTimeout  time.Duration // reading one request, headers and body (default 10 s)
	WriteTimeout time.Duration // writing one response (default 10 s)
	IdleTimeout  time.Duration // an idle keep-alive connection (default 60 s)

	Logger *zap.Logger
	// Registry receives the HTTP metrics and is what /metrics serves. Nil
	// creates one with the Go and process collectors.
	Registry *prometheus.Registry
}

const (
	defaultMaxBody      = 64 << 10
	defaultMaxAdminBody = 1 << 20
	maxForwardResponse  = 8 << 20
)

// Server is the HTTP API of one node.
type Server struct {
	opts      Options
	svc       txswitch.Service
	log       *zap.Logger
	debug     bool
	routes    []route
	router    *router
	metrics   *metrics
	fwd       *forwarder
	adminOn   bool
	adminHash [sha256.Size]byte
	promH     fasthttp.RequestHandler
	srv       *fasthttp.Server

	ridPrefix string
	ridSeq    atomic.Uint64
	// closing is set by Shutdown. fasthttp clears its own stop flag when
	// a graceful shutdown times out, so a connection whose request
	// outlived the grace would otherwise stay open and keep being served
	// by this stopped node; every answer after Shutdown closes its
	// connection instead, sending the client to a live node.
	closing atomic.Bool
}

// New builds a Server from opts, filling defaults.
func New(opts Options) *Server {
	if opts.Service == nil {
		panic("api: Options.Service is required")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if opts.NodeID == "" {
		opts.NodeID, _ = os.Hostname()
		if opts.NodeID == "" {
			opts.NodeID = "node"
		}
	}
	setDefault(&opts.MaxBodyBytes, defaultMaxBody)
	setDefault(&opts.MaxAdminBodyBytes, defaultMaxAdminBody)
	setDefault(&opts.RequestTimeout, 10*time.Second)
	setDefault(&opts.ForwardGrace, 2*time.Second)
	setDefault(&opts.ForwardMaxConns, 256)
	setDefault(&opts.Concurrency, 10000)
	setDefault(&opts.ReadTimeout, 10*time.Second)
	setDefault(&opts.WriteTimeout, 10*time.Second)
	setDefault(&opts.IdleTimeout, 60*time.Second)

	s := &Server{
		opts:    opts,
		svc:     opts.Service,
		log:     opts.Logger.Named("api"),
		routes:  routeTable(),
		metrics: newMetrics(opts.Registry),
		adminOn: opts.AdminToken != "",
	}
	s.debug = s.log.Core().Enabled(zap.DebugLevel)
	s.router = newRouter(s.routes)
	s.adminHash = sha256.Sum256([]byte(opts.AdminToken))
	s.fwd = newForwarder(opts.ForwardMaxConns, opts.RequestTimeout+opts.ForwardGrace)
	s.promH = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
	var rnd [4]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	s.ridPrefix = hex.EncodeToString(rnd[:]) + "-"

	maxBody := max(opts.MaxBodyBytes, opts.MaxAdminBodyBytes)
	s.srv = &fasthttp.Server{
		Handler:                      s.handle,
		ErrorHandler:                 s.protocolError,
		Name:                         "txswitch",
		Concurrency:                  fasthttpSlack(opts.Concurrency),
		ReadTimeout:                  opts.ReadTimeout,
		WriteTimeout:                 opts.WriteTimeout,
		IdleTimeout:                  opts.IdleTimeout,
		MaxRequestBodySize:           maxBody,
		DisablePreParseMultipartForm: true,
		Logger:                       fasthttpLogger{s.log.Sugar()},
	}
	return s
}

func setDefault[T int | time.Duration](p *T, v T) {
	if *p <= 0 {
		*p = v
	}
}

// Handler is the request handler, for embedding in another fasthttp server.
// Body size limits then also depend on that server's MaxRequestBodySize.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// ListenAndServe serves on addr until Shutdown.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: serve %s: %w", addr, err)
	}
	return s.Serve(ln)
}

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(s.limit(ln)); err != nil {
		return fmt.Errorf("api: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting connections and waits, until ctx ends, for the
// requests in flight to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	err := s.srv.ShutdownWithContext(ctx)
	s.fwd.close()
	if err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	return nil
}

// reqCtx is one API request being served.
type reqCtx struct {
	fc        *fasthttp.RequestCtx
	ctx       context.Context
	route     *route
	id        string // the path parameter
	caller    txswitch.Caller
	requestID string
}

const (
	hdrRequestID  = "X-Request-Id"
	hdrForwarded  = "X-Txswitch-Forwarded"
	hdrLeader     = "X-Txswitch-Leader"
	hdrIdemKey    = "Idempotency-Key"
	hdrSignature  = "X-Provider-Signature"
	hdrRetryAfter = "Retry-After"
)

// handle is the fasthttp handler: routing, metrics and request ids around
// serve.
func (s *Server) handle(fc *fasthttp.RequestCtx) {
	start := time.Now()
	s.metrics.inFlight.Inc()
	label := "unmatched"
	rid := s.requestID(fc)
	fc.Response.Header.Set(hdrRequestID, rid)
	defer func() {
		if s.closing.Load() {
			fc.SetConnectionClose()
		}
		if p := recover(); p != nil {
			s.log.Error("handler panic", zap.String("request_id", rid), zap.Any("panic", p), zap.Stack("stack"))
			writeError(fc, txswitch.NewError(500, "internal", "", "internal error; request id "+rid))
		}
		status := fc.Response.StatusCode()
		s.metrics.observe(label, methodLabel(fc.Method()), status, time.Since(start))
		s.metrics.inFlight.Dec()
		if s.debug {
			s.log.Debug("request", zap.String("request_id", rid), zap.ByteString("method", fc.Method()),
				zap.ByteString("path", fc.Path()), zap.Int("status", status), zap.Duration("took", time.Since(start)))
		}
	}()

	pp, param := s.router.match(fc.Path())
	if pp == nil {
		writeError(fc, txswitch.NewError(404, "not_found", "", "no such endpoint: "+string(fc.Path())))
		return
	}
	rt := pp.byMethod[string(fc.Method())]
	if rt == nil {
		fc.Response.Header.Set("Allow", pp.allow)
		writeError(fc, txswitch.NewError(405, "method_not_allowed", "",
			fmt.Sprintf("%s is not allowed on %s; allowed: %s", fc.Method(), pp.pattern, pp.allow)))
		return
	}
	if rt.isAdmin() && !s.adminOn {
		writeError(fc, txswitch.NewError(404, "not_found", "", "the admin API is disabled on this node"))
		return
	}
	label = rt.pattern
	if rt.raw != nil {
		rt.raw(s, fc)
		return
	}
	s.serve(&reqCtx{fc: fc, route: rt, id: param, requestID: rid})
}

// serve runs the request pipeline described in doc.go.
func (s *Server) serve(rc *reqCtx) {
	rt, fc := rc.route, rc.fc
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	rc.ctx = ctx
	// Before the key is checked: a removed node's copy of the
	// configuration no longer follows the cluster's, and whatever the
	// request, the caller's answer is elsewhere. Forwarding would still
	// work, but a load balancer must see this node refuse, not serve.
	if s.removed() && rt.pattern != "/v1/admin/status" {
		s.writeErr(rc, txswitch.ErrorRemoved())
		return
	}
	// A caller without a valid key hears 401 whatever else is wrong with
	// its request (API.md). A provider's notification is authenticated by
	// a signature over its body, for the provider its path names, so those
	// two are checked first for it.
	bearer := rt.auth != authProvider
	if bearer {
		if err := s.authenticate(rc, nil); err != nil {
			s.writeErr(rc, err)
			return
		}
	}
	if err := checkParam(rt.pattern, rc.id); err != nil {
		s.writeErr(rc, err)
		return
	}
	body := fc.PostBody()
	limit := s.opts.MaxBodyBytes
	if rt.adminBody {
		limit = s.opts.MaxAdminBodyBytes
	}
	if len(body) > limit {
		s.writeErr(rc, txswitch.NewError(413, "body_too_large", "",
			fmt.Sprintf("the request body exceeds %d bytes", limit)))
		return
	}
	if !bearer {
		if err := s.authenticate(rc, body); err != nil {
			s.writeErr(rc, err)
			return
		}
	}
	if rt.write {
		key, err := idempotencyKey(&fc.Request.Header)
		if err != nil {
			s.writeErr(rc, err)
			return
		}
		rc.caller.IdempotencyKey = key
	}
	var v any
	if rt.body != bodyIgnored {
		var err error
		if v, err = decodeBody(rt, &fc.Request.Header, body); err != nil {
			s.writeErr(rc, err)
			return
		}
	}
	if rt.needsAdminOps() && s.opts.Admin == nil {
		s.writeErr(rc, txswitch.NewError(404, "not_found", "", "cluster administration is not available on this node"))
		return
	}
	if (rt.write || rt.leaderRead) && !s.isLeader() {
		s.forward(rc, body, v)
		return
	}
	reply, err := rt.call(s, rc, v)
	if err != nil {
		s.writeErr(rc, err)
		return
	}
	s.writeReply(rc, reply)
}

// needsAdminOps reports whether the route calls Options.Admin.
func (r *route) needsAdminOps() bool {
	switch r.pattern {
	case "/v1/admin/status", "/v1/admin/members", "/v1/admin/members/{id}", "/v1/admin/leader":
		return true
	}
	return false
}

func (s *Server) removed() bool {
	return s.opts.Cluster != nil && s.opts.Cluster.Removed()
}

func (s *Server) isLeader() bool {
	return s.opts.Cluster == nil || s.opts.Cluster.Leadership().IsLeader
}

// leaderHint is the leader's API address when known.
func (s *Server) leaderHint() (string, bool) {
	if s.opts.Cluster == nil {
		return "", false
	}
	return s.opts.Cluster.LeaderAPIAddr()
}

// requestID echoes a well-formed X-Request-Id or makes one: a random
// per-process prefix and a counter, unique without a syscall per request.
func (s *Server) requestID(fc *fasthttp.RequestCtx) string {
	if v := fc.Request.Header.Peek(hdrRequestID); len(v) > 0 && len(v) <= 128 && isToken(v) {
		return string(v)
	}
	return s.ridPrefix + strconv.FormatUint(s.ridSeq.Add(1), 36)
}

// isToken reports whether b is visible ASCII without spaces.
func isToken(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func methodLabel(m []byte) string {
	switch string(m) {
	case "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH":
		return string(m)
	}
	return "other"
}

func (s *Server) healthz(fc *fasthttp.RequestCtx) {
	fc.SetContentType("application/json")
	fc.SetBodyString(`{"status":"ok"}`)
}

func (s *Server) readyz(fc *fasthttp.RequestCtx) {
	if s.opts.Cluster != nil {
		var e *txswitch.Error
		if s.removed() {
			e = txswitch.ErrorRemoved()
		} else if err := s.opts.Cluster.Ready(); err != nil {
			e = txswitch.NewError(503, "not_ready", "", err.Error())
		}
		if e != nil {
			s.setRetryHeaders(fc, e.Status)
			writeError(fc, e)
			return
		}
	}
	fc.SetContentType("application/json")
	fc.SetBodyString(`{"status":"ready"}`)
}

func (s *Server) metricsHandler(fc *fasthttp.RequestCtx) { s.promH(fc) }

// fasthttpLogger sends fasthttp's own messages (connection errors caused by
// clients) to zap at debug level: they are not the server's faults.
type fasthttpLogger struct{ l *zap.SugaredLogger }

func (f fasthttpLogger) Printf(format string, args ...any) { f.l.Debugf(format, args...) }
