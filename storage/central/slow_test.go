package central

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"go.uber.org/zap"

	"github.com/txswitch/txswitch/storage/central/pgtest"
)

// TestSlowDatabase puts toxiproxy between the exporter and PostgreSQL and
// makes every answer slower than the write timeout: batches time out (some
// after their COMMIT reached the server — the exactly-once crash window),
// the breaker opens, and once the latency goes the backlog drains exactly
// once.
func TestSlowDatabase(t *testing.T) {
	url := pgtest.Start(t)
	direct := newPool(t, url)
	ctx := context.Background()
	if _, err := Migrate(ctx, direct, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	pc, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	upstream := fmt.Sprintf("%s:%d", pc.Host, pc.Port)
	proxy := toxiproxy.NewProxy(toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()),
		"central-db", "127.0.0.1:0", upstream)
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Stop)
	proxied := newPool(t, strings.Replace(url, upstream, proxy.Listen, 1))

	src := newFakeSource()
	src.produceMerchants()
	src.produceOrders(20)
	// testConfig's write timeout is one a loaded machine meets; only the
	// slow phase runs with one below the injected latency. Run reads the
	// timeout, so it is changed while the loop is stopped.
	e, err := NewExporter(ctx, testConfig(proxied, src, zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	stop := runExporter(t, e)
	setWriteTimeout := func(d time.Duration) {
		stop()
		e.cfg.WriteTimeout = d
		stop = runExporter(t, e)
	}
	waitExported(t, e, src.Head())

	setWriteTimeout(300 * time.Millisecond)
	if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(
		`{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":700}}`)); err != nil {
		t.Fatal(err)
	}
	src.produceOrders(50)
	e.Kick()
	eventually(t, "breaker open on a slow database", func() bool { return e.Stats().BreakerState == "open" })
	if st := e.Stats(); st.LagEvents == 0 || st.LastError == "" {
		t.Fatalf("slow database: %+v", st)
	}

	if err := proxy.Toxics.RemoveToxic(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	setWriteTimeout(testConfig(nil, nil, nil).WriteTimeout)
	src.produceOrders(10)
	waitExported(t, e, src.Head())
	verifyDatabase(t, direct, src)
}
