package central

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestScratchSizes(t *testing.T) {
	pool := migratedDB(t)
	src := newFakeSource()
	src.produceMerchants()
	for src.Head() < 50_000 {
		src.produceOrders(100)
	}
	kinds := map[string]int{}
	all, _ := src.ReadOutbox(0, len(src.events))
	for _, ev := range all {
		kinds[ev.Kind]++
	}
	fmt.Println("kinds", kinds, "orders", src.nOrders)
	ctx := context.Background()
	cfg := testConfig(pool, src, zap.NewNop())
	cfg.Batch = 1000
	cfg.WriteTimeout = time.Minute
	e, _ := NewExporter(ctx, cfg)
	for {
		if wm, _ := src.ExportWatermark(); wm == src.head {
			break
		}
		if _, failed := e.step(ctx, 0); failed {
			t.Fatal(e.Stats().LastError)
		}
	}
	rows, _ := pool.Query(ctx, `SELECT c.relname, c.relkind, pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid=c.relnamespace WHERE n.nspname='public' AND c.relkind IN ('r','i') ORDER BY 3 DESC`)
	for rows.Next() {
		var n, k string
		var sz int64
		rows.Scan(&n, &k, &sz)
		fmt.Printf("%-40s %s %8d KB %6.1f B/event\n", n, k, sz/1024, float64(sz)/float64(src.head))
	}
	rows.Close()
	time.Sleep(time.Second)
	rows, _ = pool.Query(ctx, `SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables ORDER BY 2 DESC`)
	for rows.Next() {
		var n string
		var a, b, c int64
		rows.Scan(&n, &a, &b, &c)
		fmt.Printf("%-30s ins %7d upd %7d hot %7d\n", n, a, b, c)
	}
	rows.Close()
}
