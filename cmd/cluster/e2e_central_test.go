package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/txswitch/txswitch/storage/central/pgtest"
	txswitch "github.com/txswitch/txswitch/switch"
)

// The central-database degraded mode end to end (DESIGN invariant 5 and
// "PostgreSQL down: payments continue; outbox grows; export lag is visible;
// catch-up after recovery"): a real 3-node cluster exports to a real,
// private PostgreSQL that the tests kill, restart and slow down. The
// evidence is taken from outside the switch where possible: the answers the
// merchant was given, the PSPs' ledgers and the rows in PostgreSQL.

// centralCatchUp bounds every wait for the export to reach the outbox head.
// Generous: after an outage the exporter's backoff is capped at 30 s and
// its breaker probes every 10 s, on a loaded 2-core machine.
const centralCatchUp = 3 * time.Minute

// centralOutage is how long the database stays down under traffic.
// TXSWITCH_LONG=1 makes it the 30 s of the issue; the default keeps `make
// test` short.
func centralOutage() time.Duration {
	if os.Getenv("TXSWITCH_LONG") == "1" {
		return 30 * time.Second
	}
	return 12 * time.Second
}

// startCentralE2E creates a database on srv and starts a 3-node cluster
// exporting to it, directly or (proxyAddr set) through a proxy in front of
// srv. It returns the cluster and the database's direct URL. Cleanup stops
// the cluster before the server.
func startCentralE2E(t *testing.T, srv *pgtest.Server, proxyAddr string, tune ...ExportTuning) (*Local, string) {
	t.Helper()
	direct := srv.NewDatabase(t)
	viaCluster := direct
	if proxyAddr != "" {
		viaCluster = strings.Replace(direct, fmt.Sprintf("127.0.0.1:%d", srv.Port()), proxyAddr, 1)
	}
	cfg := LocalConfig{Dir: t.TempDir(), ResolveEvery: 100 * time.Millisecond, CentralDB: viaCluster}
	for _, x := range tune {
		cfg.Export = x
	}
	l, err := StartLocal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l, direct
}

// ---------------------------------------------------------------------------
// Traffic and what the merchant was told.

// centralAck is what the merchant was told about one payment, updated by
// every acknowledged answer in order.
type centralAck struct {
	OrderID  string
	Status   string
	Amount   int64
	Captured int64
	Refunded int64
}

// centralLoad drives order + pay (+ refund) flows from several clients and
// keeps every acknowledged answer. It never fails the test from its
// goroutines: it counts, and the test asserts on the counts.
type centralLoad struct {
	l     *Local
	addrs []string

	mu        sync.Mutex
	orders    map[string]int64 // acknowledged orders: id -> amount
	payments  map[string]*centralAck
	refunds   map[string]int64 // acknowledged refunds: id -> amount
	flows     int
	declines  int         // declines by the PSP's amount rule
	inDoubt   int         // payments answered in_doubt
	byStatus  map[int]int // HTTP status -> answers
	transport int         // requests without an answer
	retried   int         // 503s (and 409 in progress) retried with the same key
	bad       []string    // first unexpected answers, for the failure message
	stop      chan struct{}
	wg        sync.WaitGroup
}

func newCentralLoad(l *Local) *centralLoad {
	return &centralLoad{l: l, addrs: l.APIAddrs(), orders: map[string]int64{}, payments: map[string]*centralAck{},
		refunds: map[string]int64{}, byStatus: map[int]int{}, stop: make(chan struct{})}
}

// run starts clients; each runs flows until maxFlows (in total, 0: no
// limit) or stop.
func (c *centralLoad) run(clients, maxFlows int) {
	for i := 0; i < clients; i++ {
		c.wg.Add(1)
		go func(i int) {
			defer c.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for {
				select {
				case <-c.stop:
					return
				default:
				}
				c.mu.Lock()
				if maxFlows > 0 && c.flows >= maxFlows {
					c.mu.Unlock()
					return
				}
				c.flows++
				n := c.flows
				c.mu.Unlock()
				c.flow(rng, n)
			}
		}(i)
	}
}

// halt stops the clients and waits for their flows in flight.
func (c *centralLoad) halt() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.wg.Wait()
}

// leaderless are the 503 codes of a node that has no leader to serve with.
var leaderless = map[string]bool{txswitch.CodeNoLeader: true, txswitch.CodeNotLeader: true, "leader_unreachable": true}

// send sends one merchant request to a node picked by n, counting the
// final answer. ok means a 2xx. A 503 with Retry-After for want of a
// leader (an election: API.md allows it) is retried on the next node with
// the same idempotency key, as e2eRetrying does, and so is the 409
// idempotency_request_in_progress an attempt still in flight causes; a
// 503 for any other cause (the central database must never be one), or
// one still answered after 30 s, counts.
func (c *centralLoad) send(n int, method, path string, body any) (e2eResp, bool) {
	b, _ := json.Marshal(body)
	key := e2eNewKey("central")
	deadline := time.Now().Add(30 * time.Second)
	var r e2eResp
	var err error
	for i := n; ; i++ {
		r, err = e2eSend(c.addrs[i%len(c.addrs)], e2eRawReq{Method: method, Path: path,
			Headers: e2eMerchantHeaders(c.l.APIKey, key), Body: b})
		retry := err == nil && (r.Status == 503 && r.Header.Get("Retry-After") != "" && leaderless[r.errCode()] ||
			r.Status == 409 && r.errCode() == "idempotency_request_in_progress")
		if !retry || time.Now().After(deadline) {
			break
		}
		c.mu.Lock()
		c.retried++
		c.mu.Unlock()
		time.Sleep(30 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.transport++
		c.note(fmt.Sprintf("%s %s: %v", method, path, err))
		return r, false
	}
	c.byStatus[r.Status]++
	if r.Status/100 != 2 {
		c.note(fmt.Sprintf("%s %s: %d %s", method, path, r.Status, r.Body))
		return r, false
	}
	return r, true
}

func (c *centralLoad) note(s string) {
	if len(c.bad) < 5 {
		c.bad = append(c.bad, s)
	}
}

// flow is one shopper: an order, a card payment (automatic capture) and,
// for some, a partial or full refund. One order in eight has an amount
// ending in 05, which the simulated PSP declines (do_not_honor).
func (c *centralLoad) flow(rng *rand.Rand, n int) {
	amount := int64(100+rng.IntN(900)) * 100
	decline := n%8 == 0
	if decline {
		amount += 5
	}
	r, ok := c.send(n, "POST", "/v1/orders", txswitch.CreateOrderRequest{
		Reference: fmt.Sprintf("central-%d", n), Amount: txswitch.Money{Value: amount, Currency: "EUR"},
		Customer: txswitch.Customer{Country: "NL", ID: fmt.Sprintf("cust-%d", n%17)}, Channel: "online"})
	if !ok {
		return
	}
	var o txswitch.Order
	if json.Unmarshal(r.Body, &o) != nil || o.ID == "" {
		c.mu.Lock()
		c.note("order answer: " + string(r.Body))
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.orders[o.ID] = amount
	c.mu.Unlock()

	r, ok = c.send(n+1, "POST", "/v1/orders/"+o.ID+"/payments", txswitch.CreatePaymentRequest{Method: "card"})
	if !ok {
		return
	}
	var p txswitch.Payment
	if json.Unmarshal(r.Body, &p) != nil || p.ID == "" {
		c.mu.Lock()
		c.note("payment answer: " + string(r.Body))
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.payments[p.ID] = &centralAck{OrderID: o.ID, Status: p.Status, Amount: p.Amount.Value, Captured: p.Captured.Value, Refunded: p.Refunded.Value}
	switch {
	case p.Status == txswitch.PaymentInDoubt:
		// The PSP did not answer in time (a loaded machine): a legitimate
		// answer, settled later by the resolver; verifyCentral waits for it.
		c.inDoubt++
	case decline && p.Status == txswitch.PaymentDeclined && p.Failure != nil && p.Failure.Code == "do_not_honor":
		c.declines++
	case decline || p.Status != txswitch.PaymentCaptured:
		c.note(fmt.Sprintf("payment of %d: %s", amount, r.Body))
	}
	c.mu.Unlock()
	if p.Status != txswitch.PaymentCaptured || n%3 != 0 {
		return
	}
	refund := p.Captured.Value / 2
	if n%2 == 0 {
		refund = p.Captured.Value
	}
	r, ok = c.send(n+2, "POST", "/v1/payments/"+p.ID+"/refunds", txswitch.RefundRequest{
		Amount: &txswitch.Money{Value: refund, Currency: "EUR"}, Reason: "return", Channel: "online"})
	if !ok {
		return
	}
	var rf txswitch.Refund
	if json.Unmarshal(r.Body, &rf) != nil || rf.ID == "" || rf.Status != "succeeded" {
		c.mu.Lock()
		c.note("refund answer: " + string(r.Body))
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refunds[rf.ID] = rf.Amount.Value
	a := c.payments[p.ID]
	a.Refunded += rf.Amount.Value
	a.Status = txswitch.PaymentPartiallyRefunded
	if a.Refunded == a.Captured {
		a.Status = txswitch.PaymentRefunded
	}
}

// requireAllAnswered asserts that every request got a 2xx answer (declines
// by amount rule are 201 with status declined) and that the flows
// happened.
func (c *centralLoad) requireAllAnswered(t *testing.T, minFlows int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	fivexx := 0
	for s, n := range c.byStatus {
		if s >= 500 {
			fivexx += n
		}
	}
	t.Logf("traffic: %d flows, %d orders, %d payments (%d declined by amount rule, %d in doubt), %d refunds; answers by status %v; %d without answer; %d retried",
		c.flows, len(c.orders), len(c.payments), c.declines, c.inDoubt, len(c.refunds), c.byStatus, c.transport, c.retried)
	if fivexx != 0 || c.transport != 0 || len(c.bad) != 0 {
		t.Fatalf("%d 5xx answers, %d requests without answer, unexpected answers: %q", fivexx, c.transport, c.bad)
	}
	if len(c.payments) < minFlows || c.declines == 0 || len(c.refunds) == 0 {
		t.Fatalf("too little traffic to prove anything: %d payments, %d declines, %d refunds", len(c.payments), c.declines, len(c.refunds))
	}
}

// ---------------------------------------------------------------------------
// The checks.

// exportState is the leader's export progress, read in-process.
func exportState(l *Local) (head, watermark uint64, st Status, ok bool) {
	n := l.Leader()
	if n == nil {
		return 0, 0, st, false
	}
	var err error
	if st, err = n.NodeStatus(); err != nil || st.Export == nil {
		return 0, 0, st, false
	}
	if head, err = n.svc.OutboxHead(); err != nil {
		return 0, 0, st, false
	}
	return head, st.Outbox.Watermark, st, true
}

// waitExportedAll waits until the leader's replicated export watermark
// reaches its outbox head, and returns that head.
func waitExportedAll(t *testing.T, l *Local) uint64 {
	t.Helper()
	var head uint64
	waitFor(t, centralCatchUp, "the export watermark to reach the outbox head", func() bool {
		h, wm, _, ok := exportState(l)
		head = h
		return ok && h > 0 && wm == h
	})
	return head
}

func pgPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// pgRows runs query and calls scan for every row.
func pgRows(t *testing.T, pool *pgxpool.Pool, query string, scan func(pgx.Rows) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := pool.Query(ctx, query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			t.Fatalf("%s: scan: %v", query, err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// merchantTotals are one merchant's figures, from any of the three views.
type merchantTotals struct {
	Orders, Payments, Refunds int
	Captured, Refunded        int64
}

// verifyCentral is the end state every test must reach: the export caught
// up with the outbox, every event is in PostgreSQL exactly once with no
// gap, and the tables hold exactly what the merchant was told — checked
// against the merchant's answers, the cluster's API and the PSP ledgers.
func verifyCentral(t *testing.T, l *Local, dbURL string, load *centralLoad) {
	t.Helper()
	settleInDoubt(t, l, load)
	head := waitExportedAll(t, l)
	pool := pgPool(t, dbURL)

	// 1. Exactly once, no gaps: seq set = 1..head.
	var count, distinctSeq, distinctID, minSeq, maxSeq int64
	pgRows(t, pool, `SELECT count(*), count(DISTINCT seq), count(DISTINCT event_id), coalesce(min(seq),0), coalesce(max(seq),0) FROM exported_event_log`,
		func(r pgx.Rows) error { return r.Scan(&count, &distinctSeq, &distinctID, &minSeq, &maxSeq) })
	if h := int64(head); count != h || distinctSeq != h || distinctID != h || minSeq != 1 || maxSeq != h {
		t.Fatalf("exported_event_log: %d rows, %d distinct seqs, %d distinct ids, seq %d..%d; outbox head %d",
			count, distinctSeq, distinctID, minSeq, maxSeq, head)
	}
	if h2, _, _, ok := exportState(l); !ok || h2 != head {
		t.Fatalf("outbox head moved during the check (%d -> %d): traffic was not quiet", head, h2)
	}

	// 2. Orders: exactly the acknowledged ones, with their amounts.
	type orderRow struct {
		merchant, status  string
		amount            int64
		captured, refunds int64
	}
	pgOrders := map[string]orderRow{}
	pgRows(t, pool, `SELECT id, merchant_id, status, amount_minor, captured_minor, refunded_minor FROM orders`, func(r pgx.Rows) error {
		var id string
		var o orderRow
		err := r.Scan(&id, &o.merchant, &o.status, &o.amount, &o.captured, &o.refunds)
		pgOrders[id] = o
		return err
	})
	load.mu.Lock()
	defer load.mu.Unlock()
	if len(pgOrders) != len(load.orders) {
		t.Errorf("orders table holds %d rows, the merchant was given %d orders", len(pgOrders), len(load.orders))
	}
	for id, amount := range load.orders {
		o, ok := pgOrders[id]
		if !ok {
			t.Errorf("acknowledged order %s missing from PostgreSQL", id)
			continue
		}
		if o.amount != amount || o.merchant != l.MerchantID {
			t.Errorf("order %s in PostgreSQL: %+v; acknowledged amount %d for %s", id, o, amount, l.MerchantID)
		}
	}

	// 3. Payments: exactly the acknowledged ones, with the acknowledged
	// status and amounts.
	type payRow struct {
		order, merchant, status    string
		amount, captured, refunded int64
	}
	pgPays := map[string]payRow{}
	pgRows(t, pool, `SELECT id, order_id, merchant_id, status, amount_minor, captured_minor, refunded_minor FROM payments`, func(r pgx.Rows) error {
		var id string
		var p payRow
		err := r.Scan(&id, &p.order, &p.merchant, &p.status, &p.amount, &p.captured, &p.refunded)
		pgPays[id] = p
		return err
	})
	if len(pgPays) != len(load.payments) {
		t.Errorf("payments table holds %d rows, the merchant was given %d payments", len(pgPays), len(load.payments))
	}
	for id, a := range load.payments {
		p, ok := pgPays[id]
		if !ok {
			t.Errorf("acknowledged payment %s missing from PostgreSQL", id)
			continue
		}
		want := payRow{order: a.OrderID, merchant: l.MerchantID, status: a.Status, amount: a.Amount, captured: a.Captured, refunded: a.Refunded}
		if p != want {
			t.Errorf("payment %s in PostgreSQL: %+v; acknowledged %+v", id, p, want)
		}
	}
	pgRefunds := map[string]int64{}
	pgRows(t, pool, `SELECT id, amount_minor FROM refunds WHERE status = 'succeeded'`, func(r pgx.Rows) error {
		var id string
		var v int64
		err := r.Scan(&id, &v)
		pgRefunds[id] = v
		return err
	})
	if fmt.Sprint(pgRefunds) != fmt.Sprint(load.refunds) {
		t.Errorf("refunds in PostgreSQL (%d) differ from the acknowledged ones (%d)", len(pgRefunds), len(load.refunds))
	}
	if t.Failed() {
		t.FailNow()
	}

	// 4. Per merchant: PostgreSQL's aggregates = the cluster's own (read
	// over the API) = the PSPs' ledgers.
	fromPG := map[string]merchantTotals{}
	pgRows(t, pool, `SELECT m, sum(o), sum(p), sum(r), sum(c), sum(rf) FROM (
		SELECT merchant_id m, count(*) o, 0 p, 0 r, 0 c, 0 rf FROM orders GROUP BY merchant_id
		UNION ALL SELECT merchant_id, 0, count(*), 0, sum(captured_minor), sum(refunded_minor) FROM payments GROUP BY merchant_id
		UNION ALL SELECT merchant_id, 0, 0, count(*), 0, 0 FROM refunds WHERE status = 'succeeded' GROUP BY merchant_id
	) x GROUP BY m`, func(r pgx.Rows) error {
		var m string
		var v merchantTotals
		err := r.Scan(&m, &v.Orders, &v.Payments, &v.Refunds, &v.Captured, &v.Refunded)
		fromPG[m] = v
		return err
	})
	var api, psp merchantTotals
	addr := e2eAnyAddr(t, l, false)
	ids := make([]string, 0, len(load.orders))
	for id := range load.orders {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		o := e2eGetOrder(t, l, addr, id)
		api.Orders++
		api.Captured += o.Captured.Value
		api.Refunded += o.Refunded.Value
		if po := pgOrders[id]; po.status != o.Status || po.captured != o.Captured.Value || po.refunds != o.Refunded.Value {
			t.Errorf("order %s: PostgreSQL %+v, API status %s captured %d refunded %d", id, po, o.Status, o.Captured.Value, o.Refunded.Value)
		}
		for _, p := range o.Payments {
			api.Payments++
			api.Refunds += len(p.Refunds)
			for _, s := range l.Sims {
				tot := s.Totals(p.ID)
				psp.Captured += tot.Captured
				psp.Refunded += tot.Refunded
			}
		}
	}
	psp.Orders, psp.Payments, psp.Refunds = api.Orders, api.Payments, api.Refunds // the PSPs know money, not counts
	if len(fromPG) != 1 || fromPG[l.MerchantID] != api || api != psp {
		t.Fatalf("per-merchant totals differ:\n  PostgreSQL %+v\n  API        %+v\n  PSP ledger %+v", fromPG, api, psp)
	}
	t.Logf("PostgreSQL holds %d events (1..%d, each once), %d orders, %d payments, %d refunds; %s captured %d refunded %d",
		head, head, api.Orders, api.Payments, api.Refunds, l.MerchantID, api.Captured, api.Refunded)
}

// settleInDoubt waits until the resolver settled every payment that was
// answered in_doubt, and takes the settled payment (what the merchant
// reads next) as its acknowledged state.
func settleInDoubt(t *testing.T, l *Local, load *centralLoad) {
	t.Helper()
	load.mu.Lock()
	var ids []string
	for id, a := range load.payments {
		if a.Status == txswitch.PaymentInDoubt {
			ids = append(ids, id)
		}
	}
	load.mu.Unlock()
	for _, id := range ids {
		p := e2eWaitPayment(t, l, id, "settled", func(p txswitch.Payment) bool { return p.Status != txswitch.PaymentInDoubt })
		load.mu.Lock()
		a := load.payments[id]
		a.Status, a.Captured, a.Refunded = p.Status, p.Captured.Value, p.Refunded.Value
		load.mu.Unlock()
	}
}

// ---------------------------------------------------------------------------
// The tests.

// TestE2ECentralSteadyTraffic: with the database up, every committed event
// reaches PostgreSQL exactly once and the tables mirror the cluster.
func TestE2ECentralSteadyTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a cluster on disk")
	}
	srv := pgtest.NewServer(t)
	l, dbURL := startCentralE2E(t, srv, "")
	load := newCentralLoad(l)
	load.run(8, 300)
	load.wg.Wait()
	load.requireAllAnswered(t, 250)
	verifyCentral(t, l, dbURL, load)
}

// TestE2ECentralDatabaseDown: the database is killed mid-traffic; no
// payment notices, the breaker opens and the backlog grows (visible in the
// status), and after a restart the export catches up exactly once.
func TestE2ECentralDatabaseDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a cluster on disk")
	}
	srv := pgtest.NewServer(t)
	l, dbURL := startCentralE2E(t, srv, "")
	load := newCentralLoad(l)
	load.run(8, 0)
	defer load.halt()
	// Some traffic exported with the database up first.
	waitFor(t, 60*time.Second, "the first exported events", func() bool {
		_, wm, _, ok := exportState(l)
		return ok && wm > 50
	})

	srv.Kill()
	killedAt := time.Now()
	waitFor(t, time.Minute, "the export breaker to open", func() bool {
		_, _, st, ok := exportState(l)
		return ok && st.Export.BreakerState == "open"
	})
	// Over HTTP too, as an operator sees it.
	st := e2eAdminStatus(t, l, e2eAnyAddr(t, l, true))
	if st.Export == nil || st.Export.BreakerState != "open" || st.Export.LastError == "" || !strings.Contains(st.CentralDB, "breaker open") {
		t.Fatalf("status during the outage: central_db %q, export %+v", st.CentralDB, st.Export)
	}
	// A follower does not export: its status names the leader instead of
	// its own exporter's closed breaker and zero lag, and it serves no lag
	// or breaker gauge of the export.
	li := e2eLeaderIndex(t, l)
	for i := range l.Size() {
		n := l.Node(i)
		if n == nil || i == li {
			continue
		}
		fst := e2eAdminStatus(t, l, n.APIAddr())
		if fst.Export != nil || !strings.Contains(fst.CentralDB, fmt.Sprintf("exported by the leader, node %d", l.Node(li).ID())) {
			t.Fatalf("node %d's status during the outage: central_db %q, export %+v", n.ID(), fst.CentralDB, fst.Export)
		}
		for s := range scrapeMetrics(t, n.APIAddr()) {
			if strings.HasPrefix(s, "txswitch_export_lag_") || strings.HasPrefix(s, "txswitch_export_backlog_") || strings.HasPrefix(s, "txswitch_export_db_breaker_") {
				t.Errorf("node %d, a follower, serves %s", n.ID(), s)
			}
		}
	}
	backlog := st.Outbox.Backlog
	waitFor(t, time.Minute, "the backlog to grow", func() bool {
		_, _, st, ok := exportState(l)
		return ok && st.Outbox.Backlog > backlog+100 && st.Export.Backlog > backlog+100
	})
	if d := centralOutage() - time.Since(killedAt); d > 0 {
		time.Sleep(d) // the outage lasts, traffic continues
	}
	_, _, st, _ = exportState(l)
	t.Logf("after %v down: backlog %d events, lag %.1fs, breaker %s", time.Since(killedAt).Round(time.Second),
		st.Export.Backlog, st.Export.LagSeconds, st.Export.BreakerState)

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // traffic while the export resumes
	load.halt()
	load.requireAllAnswered(t, 100)
	verifyCentral(t, l, dbURL, load)
	// The exporter's own figures follow its last write a moment later.
	waitFor(t, 30*time.Second, "the export status to show the recovery", func() bool {
		_, _, st, ok := exportState(l)
		return ok && st.Export.BreakerState == "closed" && st.Export.LastError == "" && st.Export.Backlog == 0
	})
}

// centralProxy puts an in-process toxiproxy in front of srv.
func centralProxy(t *testing.T, srv *pgtest.Server) *toxiproxy.Proxy {
	t.Helper()
	upstream := fmt.Sprintf("127.0.0.1:%d", srv.Port())
	proxy := toxiproxy.NewProxy(toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()),
		"central-db", "127.0.0.1:0", upstream)
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Stop)
	return proxy
}

func addLatency(t *testing.T, proxy *toxiproxy.Proxy, ms int) {
	t.Helper()
	if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(fmt.Sprintf(
		`{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":%d}}`, ms))); err != nil {
		t.Fatal(err)
	}
}

// TestE2ECentralLeaderDiesDuringExport: after an outage the leader drains a
// backlog of thousands of events; it is stopped mid-drain (the database
// is slowed so that the drain takes several batches long enough to land
// in); the new leader carries on from the replicated watermark, re-exporting
// what the old one may have committed without advancing it, and the end
// state is still exactly once with no gap.
func TestE2ECentralLeaderDiesDuringExport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a cluster on disk")
	}
	srv := pgtest.NewServer(t)
	proxy := centralProxy(t, srv)
	// Batches of 1000 at most (not the whole backlog at once), so the
	// drain takes several.
	l, dbURL := startCentralE2E(t, srv, proxy.Listen, ExportTuning{Batch: 1000, BatchMax: 1000})
	waitFor(t, time.Minute, "the schema to be migrated", func() bool {
		_, _, st, ok := exportState(l)
		return ok && st.CentralDB != "" && !strings.Contains(st.CentralDB, "not reachable")
	})

	srv.Kill()
	load := newCentralLoad(l)
	load.run(8, 0)
	defer load.halt()
	waitFor(t, 3*time.Minute, "a backlog of a few thousand events", func() bool {
		_, _, st, ok := exportState(l)
		return ok && st.Outbox.Backlog >= 3000
	})
	load.halt()
	load.requireAllAnswered(t, 100)
	head, wm0, _, _ := exportState(l)
	t.Logf("backlog %d events (watermark %d, head %d)", head-wm0, wm0, head)

	// Each batch of 1000 now takes several slow round trips.
	addLatency(t, proxy, 150)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	old := e2eLeaderIndex(t, l)
	waitFor(t, centralCatchUp, "the leader to export part of the backlog", func() bool {
		_, wm, _, ok := exportState(l)
		return ok && wm > wm0
	})
	_, wm, _, _ := exportState(l)
	if wm >= head {
		t.Fatalf("the backlog drained before the leader could be stopped (watermark %d, head %d)", wm, head)
	}
	if err := l.StopNode(old); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped leader node %d at watermark %d of %d", old+1, wm, head)
	waitFor(t, 30*time.Second, "a new leader", func() bool { i := l.LeaderIndex(); return i >= 0 && i != old })
	if err := proxy.Toxics.RemoveToxic(context.Background(), "slow"); err != nil {
		t.Fatal(err)
	}
	verifyCentral(t, l, dbURL, load)
	if _, _, st, _ := exportState(l); st.Export.ExportedTotal == 0 {
		t.Fatalf("the new leader exported nothing: %+v", st.Export)
	}
}

// TestE2ECentralSlowDatabase: a database slower than the exporter's
// patience never slows a payment down to failure; the export catches up
// once it is fast again.
func TestE2ECentralSlowDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a cluster on disk")
	}
	srv := pgtest.NewServer(t)
	proxy := centralProxy(t, srv)
	l, dbURL := startCentralE2E(t, srv, proxy.Listen)
	waitFor(t, time.Minute, "the schema to be migrated", func() bool {
		_, _, st, ok := exportState(l)
		return ok && !strings.Contains(st.CentralDB, "not reachable")
	})
	addLatency(t, proxy, 2000)
	load := newCentralLoad(l)
	load.run(8, 250)
	load.wg.Wait()
	load.requireAllAnswered(t, 200)
	head, wm, _, _ := exportState(l)
	t.Logf("after the traffic on a slow database: watermark %d of %d", wm, head)
	if err := proxy.Toxics.RemoveToxic(context.Background(), "slow"); err != nil {
		t.Fatal(err)
	}
	verifyCentral(t, l, dbURL, load)
}

// BenchmarkPaymentsCentral runs BenchPayments without and with the export
// to a private PostgreSQL, same settings otherwise, to measure what the
// export costs the payments (the target: within 10 %). Run with
// -benchtime 1x -count 2 -cluster.bench.clients 64. With the export it
// also reports db-cpu-us/op, PostgreSQL's CPU per payment on the same
// cores (cpu-us/op is the switch process alone).
func BenchmarkPaymentsCentral(b *testing.B) {
	TuneGC() // as txswitch bench and a node run
	for _, export := range []bool{false, true} {
		name := "without-export"
		if export {
			name = "with-export"
		}
		b.Run(name, func(b *testing.B) {
			var srv *pgtest.Server
			if export {
				srv = pgtest.NewServer(b)
			}
			for b.Loop() {
				cfg := PaymentsBenchConfig{Dir: b.TempDir(), Clients: *benchClients, Duration: *benchDuration, Target: TargetLeader}
				if srv != nil {
					cfg.CentralDB = srv.NewDatabase(b) // a fresh outbox needs a fresh database
					cfg.DBCPU = srv.CPUTime
				}
				res, err := BenchPayments(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				reportBench(b, res)
			}
		})
	}
}
