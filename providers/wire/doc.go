// Package wire is the PSP wire protocol shared by the HTTP client adapter
// (package providers) and the simulated PSP (package providers/sim), so the
// two cannot drift apart: paths, headers, size limits, the error body and the
// request decoder live here and nowhere else.
//
// The protocol itself is described in ../sim/doc.go.
package wire
