package txswitch

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"sync"
)

// IDGenerator makes resource ids on the proposer. Ids travel inside commands,
// so apply never generates one.
type IDGenerator interface {
	// New returns prefix + "_" + a unique suffix ("pay_…").
	New(prefix string) string
}

// Id prefixes (API.md).
const (
	PrefixOrder   = "ord"
	PrefixPayment = "pay"
	PrefixRefund  = "ref"
	PrefixCapture = "cap"
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// RandomIDs makes ids with 80 random bits: unguessable, so a merchant cannot
// probe another merchant's ids, and collision-free in practice.
type RandomIDs struct{}

// New returns prefix_<16 base32 chars>.
func (RandomIDs) New(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}

// SequentialIDs makes predictable ids (prefix_000001…) for tests.
type SequentialIDs struct {
	mu sync.Mutex
	n  int
}

// New returns the next id.
func (s *SequentialIDs) New(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return fmt.Sprintf("%s_%06d", prefix, s.n)
}
