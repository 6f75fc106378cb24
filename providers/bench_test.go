package providers_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/txswitch/txswitch/providers"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// BenchmarkAuthorizeLoopback measures one authorize through the registry
// (breaker + HTTP adapter) against the simulated PSP over loopback.
func BenchmarkAuthorizeLoopback(b *testing.B) {
	s := sim.New(sim.Config{MaxLedger: b.N + 10})
	if _, err := s.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	reg := providers.NewRegistry(providers.RegistryOptions{})
	if err := reg.Configure([]txswitch.ProviderConfig{{Name: "sim", BaseURL: s.URL(), TimeoutMillis: 5000}}); err != nil {
		b.Fatal(err)
	}
	p, _ := reg.Get("sim", "card")
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := "pay_" + strconv.Itoa(i)
		if _, err := p.Do(ctx, authorize(id+"-1", id, 1000)); err != nil {
			b.Fatal(err)
		}
	}
}
