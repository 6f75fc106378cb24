// Package cluster wires one txswitch node together — the Pebble journal,
// the Raft node and its TCP transport, the payment state machine and
// service, the provider registry with its breakers, and the HTTP API — and
// runs whole local clusters with simulated PSPs for the demo, the
// benchmark, integration tests and scenarios.
//
// It is the only package that imports consensus/, storage/ and providers/
// together: they implement the domain's interfaces and know nothing of
// each other.
package cluster
