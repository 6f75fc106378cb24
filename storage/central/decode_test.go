package central

import (
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// FuzzDecodeBatch feeds arbitrary resource JSON of every kind to the
// decoder: it must never panic, and an accepted event is always in the
// batch's exported range.
func FuzzDecodeBatch(f *testing.F) {
	src := newFakeSource()
	src.produceMerchants()
	src.produceOrders(4)
	events, _ := src.ReadOutbox(0, 100)
	for _, ev := range events {
		f.Add(ev.Kind, []byte(ev.Resource))
	}
	f.Add("timeline", []byte(`{"seq":1,"type":"provider_response","data":{"latency_ms":"slow"}}`))
	f.Add("order", []byte(`{"lines":[{"quantity":1e30}]}`))
	f.Add("payment", []byte(`null`))
	f.Add("future_kind", []byte(`{}`))
	f.Fuzz(func(t *testing.T, kind string, resource []byte) {
		ev := txswitch.OutboxEvent{Seq: 7, ID: "evt_7", Kind: kind, MerchantID: "mer_x", OrderID: "ord_x",
			At: time.Unix(0, 0), Resource: resource}
		rows, err := decodeBatch([]txswitch.OutboxEvent{ev})
		if err != nil {
			return
		}
		if rows.first != 7 || rows.last != 7 {
			t.Fatalf("accepted event outside the batch's exported range %d..%d", rows.first, rows.last)
		}
		for _, rs := range rows.sets {
			_ = rs.args() // column types must match the spec
		}
	})
}
