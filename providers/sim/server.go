package sim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/txswitch/txswitch/providers/wire"
	txswitch "github.com/txswitch/txswitch/switch"
	"go.uber.org/zap"
)

// Defaults of Config.
const (
	DefaultMaxLedger      = 100_000
	DefaultNotifyQueue    = 1024
	DefaultNotifyAttempts = 5
	DefaultNotifyBackoff  = 100 * time.Millisecond
	DefaultNotifyTimeout  = 2 * time.Second
	notifyWorkers         = 2
	maxNotifyBackoff      = 2 * time.Second
	maxControlBody        = 64 << 10
	signatureHeader       = "X-Provider-Signature"
)

// Config configures a simulated PSP. Every field is optional.
type Config struct {
	// Name prefixes provider references ("sim" by default).
	Name string
	// Seed makes every random draw (latency, error rates) reproducible for
	// a given sequence of requests. Concurrent requests draw in arrival
	// order, which the scheduler decides.
	Seed   uint64
	Logger *zap.Logger
	// PublicURL is the base of redirect URLs (default http://<bound addr>).
	PublicURL string
	// MaxLedger caps ledger entries. When full, requests under new keys are
	// answered 503 X-Processed: false (code ledger_full) - the PSP refuses
	// new business rather than forget old business; replays and status
	// inquiries keep working.
	MaxLedger int
	// NotifyQueue bounds notifications waiting for delivery. When full, a
	// notification is dropped (logged and counted in Stats); the switch can
	// still learn the outcome by status inquiry, as with a real PSP.
	NotifyQueue int
	// NotifyAttempts bounds deliveries of one notification copy (retried on
	// anything but 2xx, with doubling NotifyBackoff up to 2s).
	NotifyAttempts int
	NotifyBackoff  time.Duration
	NotifyTimeout  time.Duration
	// NotifySecret, when set, signs every notification: header
	// X-Provider-Signature = hex HMAC-SHA256(secret, body), which the
	// switch's API checks before it believes a payment completed.
	NotifySecret string
	// Now is the clock stamped on ledger entries (default UTC wall clock).
	Now func() time.Time
}

// Stats counts what the PSP did.
type Stats struct {
	Processed            uint64 `json:"processed"` // new keys processed
	Replays              uint64 `json:"replays"`
	RefusedUnavailable   uint64 `json:"refused_unavailable"` // 503 X-Processed: false
	NotificationsSent    uint64 `json:"notifications_sent"`
	NotificationsFailed  uint64 `json:"notifications_failed"`
	NotificationsDropped uint64 `json:"notifications_dropped"`
	// Fenced counts status inquiries that found a key unknown and fenced
	// it; RefusedFenced the requests later refused under such a key.
	Fenced        uint64 `json:"fenced"`
	RefusedFenced uint64 `json:"refused_fenced"`
}

// Server is a simulated PSP serving the wire protocol over real HTTP.
type Server struct {
	cfg    Config
	log    *zap.Logger
	mux    *http.ServeMux
	notify *http.Client

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // serve loops and notification workers

	// mu guards everything below: the book, the behaviour, the random
	// source and the counters. Requests hold it only to plan and to book,
	// never while sleeping or doing I/O.
	mu          sync.Mutex
	book        *book
	behaviour   Behaviour
	outageUntil time.Time
	rng         *rand.Rand
	stats       Stats
	nextNotify  uint64
	queue       chan notification

	// lnMu guards the listener lifecycle (a refuse outage closes it and
	// reopens it on the same address).
	lnMu sync.Mutex
	addr string
	srv  *http.Server
	// ln is closed here, not only by srv: srv.Close closes the listeners
	// Serve has registered, and Serve runs in a goroutine that may not have
	// started yet. Until the socket is closed the kernel keeps completing
	// handshakes into its backlog, so a refuse outage begun right after
	// Start would reset connections instead of refusing them.
	ln      net.Listener
	started bool
	closed  bool
	reopen  *time.Timer
}

type notification struct {
	url string
	n   txswitch.ProviderNotification
}

// New returns a stopped simulated PSP; call Start.
func New(cfg Config) *Server {
	if cfg.Name == "" {
		cfg.Name = "sim"
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.MaxLedger <= 0 {
		cfg.MaxLedger = DefaultMaxLedger
	}
	if cfg.NotifyQueue <= 0 {
		cfg.NotifyQueue = DefaultNotifyQueue
	}
	if cfg.NotifyAttempts <= 0 {
		cfg.NotifyAttempts = DefaultNotifyAttempts
	}
	if cfg.NotifyBackoff <= 0 {
		cfg.NotifyBackoff = DefaultNotifyBackoff
	}
	if cfg.NotifyTimeout <= 0 {
		cfg.NotifyTimeout = DefaultNotifyTimeout
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = 16
	tr.Proxy = nil
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger.With(zap.String("sim", cfg.Name)),
		notify: &http.Client{Transport: tr, Timeout: cfg.NotifyTimeout},
		ctx:    ctx,
		cancel: cancel,
		book:   newBook(cfg.MaxLedger, cfg.Name),
		rng:    rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		queue:  make(chan notification, cfg.NotifyQueue),
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST "+wire.PaymentsPrefix+"{op}", s.handleOp)
	s.mux.HandleFunc("GET "+wire.StatusPrefix+"{key}", s.handleStatus)
	s.mux.HandleFunc("GET /control/behaviour", s.handleGetBehaviour)
	s.mux.HandleFunc("POST /control/behaviour", s.handleSetBehaviour)
	s.mux.HandleFunc("DELETE /control/behaviour", s.handleResetBehaviour)
	s.mux.HandleFunc("GET /control/stats", s.handleStats)
	s.mux.HandleFunc("GET /ledger", s.handleLedger)
	s.mux.HandleFunc("GET /ledger/totals", s.handleTotals)
	s.mux.HandleFunc("GET /redirect/{ref}", s.handleRedirect)
	return s
}

// Handler serves the protocol without a listener (for httptest); refuse
// outages then have no listener to close and behave like "unavailable".
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on addr (":0" picks a free port) and serves in the
// background. It returns the bound address.
func (s *Server) Start(addr string) (string, error) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.started || s.closed {
		return "", errors.New("sim: Start called twice or after Close")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("sim: listen %s: %w", addr, err)
	}
	s.started = true
	s.addr = ln.Addr().String()
	if s.cfg.PublicURL == "" {
		s.cfg.PublicURL = "http://" + s.addr
	}
	s.serveLocked(ln)
	for range notifyWorkers {
		s.wg.Add(1)
		go s.notifyWorker()
	}
	s.log.Info("simulated PSP listening", zap.String("addr", s.addr))
	return s.addr, nil
}

// URL is the base URL clients use (empty before Start).
func (s *Server) URL() string {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.addr == "" {
		return ""
	}
	return "http://" + s.addr
}

func (s *Server) serveLocked(ln net.Listener) {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(s.log),
	}
	s.srv = srv
	s.ln = ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("simulated PSP stopped serving", zap.Error(err))
		}
	}()
}

// Close stops serving, cancels pending completions and notifications, and
// waits for the background goroutines.
func (s *Server) Close() {
	s.lnMu.Lock()
	s.closed = true
	if s.reopen != nil {
		s.reopen.Stop()
	}
	s.stopServingLocked()
	s.lnMu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// refuse closes the listener and every connection, so dials are refused,
// and reopens on the same address after d (never when d is 0).
func (s *Server) refuse(d time.Duration) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.reopen != nil {
		s.reopen.Stop()
		s.reopen = nil
	}
	if s.srv != nil {
		s.stopServingLocked()
		s.log.Info("simulated PSP refusing connections", zap.Duration("for", d))
	}
	if d > 0 {
		s.reopen = time.AfterFunc(d, func() {
			s.mu.Lock()
			if o := s.behaviour.Outage; o != nil && o.Mode == OutageRefuse {
				s.behaviour.Outage = nil
			}
			s.mu.Unlock()
			s.accept()
		})
	}
}

// stopServingLocked closes the listener and every connection.
func (s *Server) stopServingLocked() {
	if s.srv == nil {
		return
	}
	_ = s.srv.Close()
	_ = s.ln.Close() // already closed when Serve had started; harmless then
	s.srv, s.ln = nil, nil
}

// accept reopens the listener after a refuse outage.
func (s *Server) accept() {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.reopen != nil {
		s.reopen.Stop()
		s.reopen = nil
	}
	if s.closed || !s.started || s.srv != nil {
		return
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		// Someone took the port meanwhile: the PSP stays "down", which is
		// what a client would see anyway. Logged, since a test will notice.
		s.log.Error("simulated PSP could not listen again after a refuse outage", zap.String("addr", s.addr), zap.Error(err))
		return
	}
	s.serveLocked(ln)
	s.log.Info("simulated PSP accepting connections again", zap.String("addr", s.addr))
}

// Behaviour returns the current behaviour.
func (s *Server) Behaviour() Behaviour {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.behaviour
}

// SetBehaviour validates and installs b, replacing the previous one. A
// refuse outage takes effect immediately (closing the listener); replacing
// a refuse outage by anything else reopens it.
func (s *Server) SetBehaviour(b Behaviour) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("sim: behaviour: %w", err)
	}
	s.mu.Lock()
	s.behaviour = b
	s.outageUntil = time.Time{}
	if o := b.Outage; o != nil && o.Mode == OutageUnavailable && o.ForMillis > 0 {
		s.outageUntil = time.Now().Add(time.Duration(o.ForMillis) * time.Millisecond)
	}
	s.mu.Unlock()
	if o := b.Outage; o != nil && o.Mode == OutageRefuse {
		s.refuse(time.Duration(o.ForMillis) * time.Millisecond)
	} else {
		s.accept()
	}
	s.log.Info("simulated PSP behaviour set", zap.Any("behaviour", b))
	return nil
}

// ResetBehaviour goes back to a well-behaved PSP (the "undo" of every
// fault), keeping the ledger.
func (s *Server) ResetBehaviour() { _ = s.SetBehaviour(Behaviour{}) }

// Ledger returns every entry, in processing order.
func (s *Server) Ledger() []LedgerEntry { return s.LedgerFor("") }

// LedgerFor returns the entries of one payment id ("" for all).
func (s *Server) LedgerFor(paymentID string) []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.book.ledger(paymentID)
}

// Totals is the PSP's money view of one payment id.
func (s *Server) Totals(paymentID string) Totals {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.book.totals(paymentID)
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// decision is everything decided for one request before acting on it.
type decision struct {
	plan
	refuse      bool   // answer 503 X-Processed: false, do nothing
	declineCode string // authorize only
	async       *Async // authorize only
}

func (s *Server) decide(method string, op txswitch.ProviderOp, req *txswitch.ProviderRequest) decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d decision
	b := s.behaviour
	if o := b.Outage; o != nil {
		if o.Mode == OutageUnavailable && !s.outageUntil.IsZero() && !time.Now().Before(s.outageUntil) {
			s.behaviour.Outage = nil // over: forget it, so GET shows the truth
		} else {
			// A refuse outage reaching here means there is no listener to
			// close (Handler used directly, or a request already in flight).
			d.refuse = true
		}
	}
	mb, applies := b.forMethod(method, op)
	if applies {
		d.plan = mb.draw(s.rng)
	}
	d.refuse = d.refuse || d.unavailable
	if req != nil && op == txswitch.OpAuthorize {
		d.declineCode = b.declineCode(*req)
		d.async = mb.Async
	}
	if d.refuse {
		s.stats.RefusedUnavailable++
	}
	return d
}

func (s *Server) handleOp(w http.ResponseWriter, r *http.Request) {
	op := txswitch.ProviderOp(r.PathValue("op"))
	if !wire.IsMoneyOp(op) {
		writeError(w, http.StatusNotFound, wire.CodeInvalidRequest, fmt.Sprintf("unknown operation %q", op))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, wire.MaxRequestBody)
	req, err := wire.DecodeRequest(r.Body, op, r.Header.Get(wire.HeaderIdempotencyKey))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge, err.Error())
			return
		}
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, err.Error())
		return
	}
	// Drain to EOF (bounded by MaxBytesReader): only then does net/http
	// watch the connection and cancel r.Context() when the client hangs up,
	// which ends a "charge then time out" stall.
	_, _ = io.Copy(io.Discard, r.Body)
	d := s.decide(req.Method, op, &req)
	if !s.sleep(r.Context(), d.latency) {
		return
	}
	if d.refuse {
		writeUnavailable(w, wire.CodeUnavailable, "simulated outage")
		return
	}

	s.mu.Lock()
	res, replayed, err := s.book.process(req, s.cfg.Now(), d.declineCode, d.async != nil, s.cfg.PublicURL+"/redirect/")
	switch {
	case err == nil && replayed:
		s.stats.Replays++
	case err == nil:
		s.stats.Processed++
	}
	s.mu.Unlock()
	switch {
	case errors.Is(err, errKeyReused):
		writeError(w, http.StatusUnprocessableEntity, wire.CodeIdempotencyKeyReused, "this idempotency key was used for a different request")
		return
	case errors.Is(err, errLedgerFull):
		s.log.Warn("ledger full: refusing a new key", zap.Int("max_ledger", s.cfg.MaxLedger))
		writeUnavailable(w, wire.CodeLedgerFull, "ledger full")
		return
	case errors.Is(err, errKeyFenced):
		s.mu.Lock()
		s.stats.RefusedFenced++
		s.mu.Unlock()
		s.log.Info("refused a request under a fenced key", zap.String("key", req.IdempotencyKey), zap.String("op", string(op)))
		writeError(w, http.StatusConflict, wire.CodeIdempotencyKeyFenced,
			"a status inquiry found this key unknown and fenced it: the request is refused and was not processed")
		return
	}
	s.log.Debug("processed", zap.String("key", req.IdempotencyKey), zap.String("op", string(op)),
		zap.String("outcome", string(res.Outcome)), zap.Bool("replayed", replayed))
	if !replayed && d.async != nil && res.Outcome == txswitch.OutcomePending {
		s.scheduleCompletion(req.IdempotencyKey, *d.async)
	}
	s.answer(w, r, d, res)
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !wire.ValidKey(key) {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "invalid idempotency key")
		return
	}
	s.mu.Lock()
	method := ""
	if rec, ok := s.book.byKey[key]; ok {
		method = s.book.entries[rec.idx].Method
	}
	s.mu.Unlock()
	d := s.decide(method, txswitch.OpStatus, nil)
	if !s.sleep(r.Context(), d.latency) {
		return
	}
	if d.refuse {
		writeUnavailable(w, wire.CodeUnavailable, "simulated outage")
		return
	}
	s.mu.Lock()
	res, err := s.book.status(key)
	if err == nil && res.Outcome == txswitch.OutcomeNotFound {
		s.stats.Fenced++
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("fence set full: cannot answer a status inquiry with not found", zap.Int("max_ledger", s.cfg.MaxLedger))
		writeUnavailable(w, wire.CodeLedgerFull, "cannot fence the key: ledger full")
		return
	}
	s.answer(w, r, d, res)
}

// answer writes res after the faults that strike once the work is done.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, d decision, res txswitch.ProviderResult) {
	if d.chargeThenTimeout {
		// The work is booked; now be the PSP that never answers in time.
		t := time.NewTimer(d.stall)
		defer t.Stop()
		select {
		case <-r.Context().Done():
			return // the client gave up: it will never know
		case <-s.ctx.Done():
			return
		case <-t.C: // answer late
		}
	}
	if d.malformed {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"outcome":"appro`))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// sleep waits d; false when the client or the server gave up meanwhile.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}

// scheduleCompletion completes a pending authorization after the bank's
// delay and queues its notification. Timers cost no goroutine while
// waiting, and their number is bounded by the ledger cap.
func (s *Server) scheduleCompletion(key string, a Async) {
	time.AfterFunc(time.Duration(a.CompleteAfterMillis)*time.Millisecond, func() {
		if s.ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		res, url, ok := s.book.complete(key, s.cfg.Now())
		if ok {
			s.nextNotify++
		}
		id := fmt.Sprintf("ntf_%s_%06d", s.cfg.Name, s.nextNotify)
		s.mu.Unlock()
		if !ok {
			return
		}
		s.log.Debug("bank completed a redirect payment", zap.String("key", key), zap.String("outcome", string(res.Outcome)))
		if url == "" {
			return
		}
		n := notification{url: url, n: txswitch.ProviderNotification{NotificationID: id, IdempotencyKey: key, Result: res}}
		time.AfterFunc(time.Duration(a.NotifyDelayMillis)*time.Millisecond, func() {
			for range 1 + a.Duplicates {
				s.enqueue(n)
			}
		})
	})
}

func (s *Server) enqueue(n notification) {
	if s.ctx.Err() != nil {
		return
	}
	select {
	case s.queue <- n:
	default:
		s.mu.Lock()
		s.stats.NotificationsDropped++
		s.mu.Unlock()
		s.log.Warn("notification queue full: dropping a notification", zap.String("notification_id", n.n.NotificationID),
			zap.Int("queue", s.cfg.NotifyQueue))
	}
}

func (s *Server) notifyWorker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case n := <-s.queue:
			s.deliver(n)
		}
	}
}

// deliver POSTs one notification until a 2xx, at most NotifyAttempts times.
func (s *Server) deliver(n notification) {
	body, _ := json.Marshal(n.n) // plain struct: cannot fail
	backoff := s.cfg.NotifyBackoff
	var last error
	for attempt := 1; attempt <= s.cfg.NotifyAttempts; attempt++ {
		if last = s.post(n.url, body); last == nil {
			s.mu.Lock()
			s.stats.NotificationsSent++
			s.mu.Unlock()
			return
		}
		if attempt == s.cfg.NotifyAttempts || !s.sleep(s.ctx, backoff) {
			break
		}
		backoff = min(2*backoff, maxNotifyBackoff)
	}
	s.mu.Lock()
	s.stats.NotificationsFailed++
	s.mu.Unlock()
	s.log.Warn("notification not delivered", zap.String("notification_id", n.n.NotificationID), zap.String("url", n.url), zap.Error(last))
}

func (s *Server) post(url string, body []byte) error {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build notification request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if s.cfg.NotifySecret != "" {
		mac := hmac.New(sha256.New, []byte(s.cfg.NotifySecret))
		mac.Write(body)
		req.Header.Set(signatureHeader, hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := s.notify.Do(req)
	if err != nil {
		return fmt.Errorf("post notification: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post notification: status %d", resp.StatusCode)
	}
	return nil
}
