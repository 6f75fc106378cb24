// Package providers is the provider side of the payment switch: it turns a
// txswitch.ProviderRequest into a call to a payment service provider (PSP)
// and the PSP's answer (or silence) into either a txswitch.ProviderResult or
// a *txswitch.ProviderError whose Definitive flag the switch relies on to
// keep DESIGN.md invariant 2 (never charge twice).
//
//   - HTTPProvider speaks the PSP wire protocol (package wire, described in
//     sim/doc.go) over a bounded net/http connection pool and classifies
//     every failure as definitive (the PSP certainly did not process the
//     request: the switch may fail over) or in doubt (it may have: the switch
//     must resolve it by status inquiry, never by charging again).
//   - Registry implements txswitch.Providers: one sony/gobreaker breaker per
//     (provider, payment method) around those adapters, reconfigurable at
//     runtime without losing breaker state. With a Registerer it exports
//     Prometheus metrics: calls by result, calls left in doubt, latency,
//     breaker states and transitions (metrics.go).
//
// The simulated PSP used by tests, scenarios and `txswitch sim-provider`
// lives in the sim subpackage. This package imports neither consensus/ nor
// storage/.
package providers
