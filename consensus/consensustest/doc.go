// Package consensustest provides a tiny deterministic state machine (a
// key/value register map with an applied index and a per-command apply
// count) for tests of consensus and of packages built on it.
package consensustest
