package central

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/txswitch/txswitch/storage/central/pgtest"
)

// BenchmarkCatchUp measures the catch-up rate after an outage: 100,000
// realistic outbox events already produced, drained into PostgreSQL.
//
//	go test -run '^$' -bench CatchUp -benchtime 3x ./storage/central/
//
// Besides events/s it reports what PostgreSQL (a private server, same
// cores) spends per event: CPU and WAL bytes.
func BenchmarkCatchUp(b *testing.B) {
	// batch=0: the defaults (Batch growing to BatchMax with the backlog);
	// the others fixed.
	for _, batch := range []int{0, 500, 1000, 5000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			// A private server, so that its CPU time is this bench's alone.
			srv := pgtest.NewServer(b)
			pool := newPool(b, srv.NewDatabase(b))
			if _, err := Migrate(context.Background(), pool, zap.NewNop()); err != nil {
				b.Fatal(err)
			}
			proto := newFakeSource()
			proto.produceMerchants()
			for proto.Head() < 100_000 {
				proto.produceOrders(100)
			}
			all, err := proto.ReadOutbox(0, len(proto.events))
			if err != nil {
				b.Fatal(err)
			}
			var bytes int
			for _, ev := range all {
				bytes += len(ev.Resource)
			}
			ctx := context.Background()
			var walBytes int64
			var dbCPU time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				if _, err := pool.Exec(ctx, `TRUNCATE merchants, orders, order_lines, payments, captures, refunds,
					timeline_events, provider_attempts, exported_events, exported_ranges;
					UPDATE export_progress SET last_seq = 0`); err != nil {
					b.Fatal(err)
				}
				src := newFakeSource()
				src.events = append(src.events, all...)
				src.head = uint64(len(all))
				cfg := testConfig(pool, src, zap.NewNop())
				cfg.Batch, cfg.BatchMax = batch, batch
				cfg.WriteTimeout = time.Minute // a loaded machine is slow, not down
				e, err := NewExporter(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				lsn0, cpu0 := walLSN(b, pool), srv.CPUTime()
				b.StartTimer()
				for {
					if wm, _ := src.ExportWatermark(); wm == src.head {
						break
					}
					if _, failed := e.step(ctx, 0); failed {
						b.Fatalf("export failed: %s", e.Stats().LastError)
					}
				}
				b.StopTimer()
				walBytes += walDiff(b, pool, lsn0)
				dbCPU += srv.CPUTime() - cpu0
				b.StartTimer()
			}
			b.ReportMetric(float64(len(all))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(bytes)/float64(len(all)), "resource_bytes/event")
			// The database's own share of the cost (it runs on the same cores
			// as the switch): WAL written per event exported.
			b.ReportMetric(float64(walBytes)/float64(len(all))/float64(b.N), "wal_bytes/event")
			b.ReportMetric(float64(dbCPU.Microseconds())/float64(len(all))/float64(b.N), "db_cpu_us/event")
		})
	}
}

func walLSN(b *testing.B, pool *pgxpool.Pool) string {
	var lsn string
	if err := pool.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		b.Fatal(err)
	}
	return lsn
}

func walDiff(b *testing.B, pool *pgxpool.Pool, from string) int64 {
	var n int64
	if err := pool.QueryRow(context.Background(), `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::bigint`, from).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkDecodeBatch is the exporter's CPU cost per batch without the
// database (decode the resources, build the column arrays).
func BenchmarkDecodeBatch(b *testing.B) {
	src := newFakeSource()
	for src.Head() < 1000 {
		src.produceOrders(10)
	}
	events, _ := src.ReadOutbox(0, 1000)
	b.ResetTimer()
	for range b.N {
		rows, err := decodeBatch(events)
		if err != nil {
			b.Fatal(err)
		}
		for _, rs := range rows.sets {
			_ = rs.args()
		}
	}
	b.ReportMetric(float64(len(events))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
