package consensus

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkPropose3Nodes measures propose→commit→apply round trips on a
// 3-node group over memnet with in-memory stores, proposals issued
// concurrently on the leader (so they batch). The network is driven by the
// test's driver; time per op includes its scheduling.
func BenchmarkPropose3Nodes(b *testing.B) {
	c := newCluster(b, 3, 1, nil)
	lead := c.leader()
	payload := put("x", "k", "0123456789abcdef0123456789abcdef")
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := lead.Propose(context.Background(), payload); err != nil {
				panic(fmt.Sprintf("propose: %v", err))
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(c.member(lead.ID()).store.Syncs())/float64(b.N), "syncs/op")
}
