package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/txswitch/txswitch/storage/central/pgserver"
)

// Central database faults. The nodes reach PostgreSQL through an in-process
// toxiproxy proxy (Database), so that a fault can slow, reset, stall or cut
// their connections without touching a server other scenarios may share;
// faults that take the server itself down (kill, clean stop) need a server
// of the caller's own (Database.Server).
//
// Every fault probes its own effect through the proxy, the way the
// exporter reaches the database: a connection and a SELECT 1 must fail
// while the database is down, reset or stalled, and take at least most of
// the latency while it is slow. A probe that saw nothing records Hit=false.

// Database is a PostgreSQL database behind a proxy.
type Database struct {
	// Server is the server's handle when the caller owns it (nil for a
	// shared or external one: kill and stop faults refuse to run).
	Server *pgserver.Server
	Proxy  *toxiproxy.Proxy
	// URL reaches the database directly; ProxyURL through the proxy
	// (what the nodes are given).
	URL, ProxyURL string
}

// NewDatabase starts a proxy in front of the database at dbURL (on srv
// when the caller owns the server, else nil).
func NewDatabase(srv *pgserver.Server, dbURL string) (*Database, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	host := u.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "5432")
	}
	p := toxiproxy.NewProxy(toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()),
		"central-db", "127.0.0.1:0", host)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("start the database proxy: %w", err)
	}
	pu := *u
	pu.Host = p.Listen
	return &Database{Server: srv, Proxy: p, URL: dbURL, ProxyURL: pu.String()}, nil
}

// Close stops the proxy (not the server).
func (d *Database) Close() { d.Proxy.Stop() }

// Probe connects through the proxy and runs SELECT 1, within timeout.
func (d *Database) Probe(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	conn, err := pgx.Connect(ctx, d.ProxyURL)
	if err != nil {
		return time.Since(start), err
	}
	defer conn.Close(context.Background())
	var one int
	err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	return time.Since(start), err
}

const probeTimeout = 2 * time.Second

// probeDown reports whether the database is unreachable through the proxy.
func (d *Database) probeDown(ctx context.Context) (bool, string) {
	took, err := d.Probe(ctx, probeTimeout)
	if err == nil {
		return false, fmt.Sprintf("probe answered in %v", took.Round(time.Millisecond))
	}
	return true, "probe failed: " + firstLine(err.Error())
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// DBDownMode is how a DBDown fault takes the database away.
type DBDownMode string

// Down modes.
const (
	DBKill        DBDownMode = "kill"        // SIGKILL the postmaster and its children; restart on undo
	DBStop        DBDownMode = "stop"        // clean (fast) shutdown; restart on undo
	DBUnreachable DBDownMode = "unreachable" // the proxy closes every connection and refuses new ones
)

var dbDownKinds = map[DBDownMode]string{DBKill: "db_kill", DBStop: "db_stop", DBUnreachable: "db_unreachable"}

// DBDown takes the database away until Undo.
type DBDown struct {
	record
	db   *Database
	mode DBDownMode
	done bool
}

// NewDBDown returns a fault that takes db down by mode.
func NewDBDown(db *Database, mode DBDownMode) *DBDown {
	return &DBDown{record: record{kind: dbDownKinds[mode], target: "central_db"}, db: db, mode: mode}
}

// NeedsServer reports whether mode acts on the server process itself.
func (m DBDownMode) NeedsServer() bool { return m == DBKill || m == DBStop }

// Inject takes the database down and probes that it is.
func (f *DBDown) Inject(ctx context.Context) error {
	start := time.Now()
	err := f.down()
	f.addAt(start, "inject", false, string(f.mode), err)
	if err != nil {
		return err
	}
	f.done = true
	down, why := f.db.probeDown(ctx)
	f.add("effect", down, why, nil)
	return nil
}

func (f *DBDown) down() error {
	if f.mode.NeedsServer() && f.db.Server == nil {
		return fmt.Errorf("%s needs a database server of this scenario's own", f.kind)
	}
	switch f.mode {
	case DBKill:
		f.db.Server.Kill()
	case DBStop:
		f.db.Server.Stop()
	case DBUnreachable:
		f.db.Proxy.Stop()
	default:
		return fmt.Errorf("unknown mode %q", f.mode)
	}
	return nil
}

// Undo brings the database back and waits until it answers.
func (f *DBDown) Undo(ctx context.Context) error {
	if !f.done {
		return nil
	}
	f.done = false
	start := time.Now()
	err := up(ctx, f.db, f.mode)
	// Recorded as of the restart's start: the database may take its first
	// connections (and the exporter drain the backlog) before our probe
	// sees it answer, so only then is a backlog certain to be waiting.
	f.addAt(start, "undo", false, "", err)
	return err
}

func up(ctx context.Context, db *Database, mode DBDownMode) error {
	switch mode {
	case DBKill, DBStop:
		if err := db.Server.Restart(); err != nil {
			return fmt.Errorf("restart the database: %w", err)
		}
	case DBUnreachable:
		if err := db.Proxy.Start(); err != nil && !errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
			return fmt.Errorf("restart the database proxy: %w", err)
		}
	}
	_, err := db.Probe(ctx, 10*time.Second)
	if err != nil {
		return fmt.Errorf("database back but not answering: %w", err)
	}
	return nil
}

// DBToxic applies a toxiproxy toxic to the database connections.
type DBToxic struct {
	record
	db      *Database
	toxic   string // toxiproxy type: latency, reset_peer, timeout
	attrs   string // the toxic's attributes as JSON
	minWait time.Duration
	on      bool
}

// DBLatency delays every answer from the database by latency.
func DBLatency(db *Database, latency time.Duration) *DBToxic {
	return &DBToxic{record: record{kind: "db_latency", target: "central_db"}, db: db, toxic: "latency",
		attrs: fmt.Sprintf(`{"latency":%d}`, latency.Milliseconds()), minWait: latency * 8 / 10}
}

// DBReset resets (TCP RST) every connection as soon as it carries data.
func DBReset(db *Database) *DBToxic {
	return &DBToxic{record: record{kind: "db_reset", target: "central_db"}, db: db, toxic: "reset_peer", attrs: `{"timeout":0}`}
}

// DBStall stops all data on every connection (never closed): the
// exporter's write timeout is what notices.
func DBStall(db *Database) *DBToxic {
	return &DBToxic{record: record{kind: "db_stall", target: "central_db"}, db: db, toxic: "timeout", attrs: `{"timeout":0}`}
}

// Inject adds the toxic (both directions for reset and stall, answers
// only for latency) and probes it.
func (f *DBToxic) Inject(ctx context.Context) error {
	err := f.add2()
	f.add("inject", false, f.toxic+" "+f.attrs, err)
	if err != nil {
		return err
	}
	f.on = true
	took, perr := f.db.Probe(ctx, probeTimeout+f.minWait)
	for i := 0; i < 5 && f.minWait > 0 && perr != nil && took < f.minWait; i++ {
		// Refused at once: another fault has the database away right now
		// (e.g. an outage ending as the slowness begins). Probe again.
		time.Sleep(100 * time.Millisecond)
		took, perr = f.db.Probe(ctx, probeTimeout+f.minWait)
	}
	var hit bool
	var why string
	switch {
	case f.minWait > 0:
		// A probe that timed out after the latency was slow too.
		hit = took >= f.minWait
		why = fmt.Sprintf("probe took %v (want >= %v), err %v", took.Round(time.Millisecond), f.minWait, perr)
	default:
		hit = perr != nil
		why = fmt.Sprintf("probe after %v: %v", took.Round(time.Millisecond), perr)
	}
	f.add("effect", hit, firstLine(why), nil)
	return nil
}

func (f *DBToxic) add2() error {
	streams := []string{"downstream"}
	if f.minWait == 0 {
		streams = append(streams, "upstream")
	}
	for _, s := range streams {
		js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"attributes":%s}`, f.kind+"_"+s, f.toxic, s, f.attrs)
		if _, err := f.db.Proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			return fmt.Errorf("add toxic %s: %w", js, err)
		}
	}
	return nil
}

// Undo removes the toxic.
func (f *DBToxic) Undo(ctx context.Context) error {
	if !f.on {
		return nil
	}
	f.on = false
	f.db.Proxy.Toxics.ResetToxics(ctx)
	f.add("undo", false, "", nil)
	return nil
}

// DBFlap takes the database away (through the proxy) for down, back for
// up, again and again until Undo.
type DBFlap struct {
	record
	db       *Database
	down, up time.Duration
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	cycles   int
	hits     int
}

// NewDBFlap returns a flapping database fault.
func NewDBFlap(db *Database, down, up time.Duration) *DBFlap {
	return &DBFlap{record: record{kind: "db_flap", target: "central_db"}, db: db, down: down, up: up}
}

// Inject starts the cycles.
func (f *DBFlap) Inject(ctx context.Context) error {
	if f.down <= 0 || f.up <= 0 {
		err := fmt.Errorf("db_flap needs down and up periods, got %v/%v", f.down, f.up)
		f.add("inject", false, "", err)
		return err
	}
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	f.add("inject", false, fmt.Sprintf("down %v / up %v", f.down, f.up), nil)
	go f.loop(context.WithoutCancel(ctx))
	return nil
}

func (f *DBFlap) loop(ctx context.Context) {
	defer close(f.done)
	for {
		f.db.Proxy.Stop()
		downAt := time.Now()
		down, _ := f.db.probeDown(ctx)
		f.mu.Lock()
		f.cycles++
		if down {
			f.hits++
		}
		f.mu.Unlock()
		if !sleepOrStop(f.stop, f.down-time.Since(downAt)) {
			return
		}
		_ = f.db.Proxy.Start()
		if !sleepOrStop(f.stop, f.up) {
			return
		}
	}
}

func sleepOrStop(stop <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		d = time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// Undo ends the cycles with the database up.
func (f *DBFlap) Undo(ctx context.Context) error {
	if f.stop == nil {
		return nil
	}
	close(f.stop)
	<-f.done
	f.stop = nil
	start := time.Now()
	err := up(ctx, f.db, DBUnreachable)
	f.addAt(start, "undo", false, "", err)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.add("effect", f.hits > 0, fmt.Sprintf("%d down phases, %d probed down", f.cycles, f.hits), nil)
	return err
}

// ExportSkip is a MUTANT: it moves the leader's replicated export
// watermark to the outbox head without exporting, so the events in
// between never reach PostgreSQL (an exporter that advanced its watermark
// before its COMMIT and then died would do the same). It retries until
// there is a backlog to skip or ctx ends.
type ExportSkip struct {
	record
	c *Cluster
}

// NewExportSkip returns the skip-events mutant.
func NewExportSkip(c *Cluster) *ExportSkip {
	return &ExportSkip{record: record{kind: "mutant_export_skip", target: "leader"}, c: c}
}

// Inject skips the current backlog once.
func (f *ExportSkip) Inject(ctx context.Context) error {
	f.add("inject", false, "", nil)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if lead := f.c.LeaderNode(); lead != nil {
			svc := lead.Service()
			head, herr := svc.OutboxHead()
			wm, werr := svc.ExportWatermark()
			if herr == nil && werr == nil && head > wm {
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := svc.AdvanceExportWatermark(actx, head)
				cancel()
				if err == nil {
					f.add("effect", true, fmt.Sprintf("watermark moved from %d to %d unexported (%d events skipped)", wm, head, head-wm), nil)
					return nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.add("effect", false, "no backlog to skip", nil)
	return nil
}

// Undo does nothing: skipped events stay skipped.
func (f *ExportSkip) Undo(context.Context) error { return nil }
