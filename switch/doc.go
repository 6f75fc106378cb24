// Package txswitch is the payment domain of txswitch. The folder is named
// switch/ but "switch" is a Go keyword, so the package is txswitch.
//
// It holds the domain types (orders, payments, refunds, money, timeline
// events), the deterministic replicated state machine, routing and method
// selection, and the interfaces at its boundaries:
//
//   - Log: the replicated log the domain proposes to (implemented by consensus/)
//   - StateMachine: what consensus drives with committed commands (implemented here)
//   - Store / Batch: the state machine's key space (implemented by storage/)
//   - Provider / Providers: the payment service providers (implemented by providers/)
//   - Clock: time, injected so tests can drive it
//
// The package knows nothing of Raft, Pebble, PostgreSQL or HTTP wire details;
// the API subpackage maps HTTP onto the Service defined here.
package txswitch
