// Package memnet is an in-memory network for consensus tests: a Transport
// per node, with per-link faults (drop rate, delay, duplication), partitions
// (symmetric sets, isolation, one-way) and heal. Nothing moves on its own:
// the test advances time with Tick and delivers with DeliverDue, and every
// random choice comes from per-link generators seeded from one seed, so a
// run replays from its seed (up to the goroutine interleaving of the nodes
// that feed it).
package memnet
