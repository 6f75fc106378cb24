package consensus

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Every normal entry's Data is a proposal envelope:
//
//	version byte (1) | uvarint proposer id | uvarint proposer incarnation |
//	uvarint sequence | payload
//
// The (proposer, incarnation, sequence) key lets the proposing node match the
// applied entry to its waiter; the incarnation is random per process start so
// an entry proposed before a restart is never mistaken for a new proposal
// with the same sequence. The state machine only sees the payload. Entries
// with empty Data (raft's own empty entries) carry no envelope.
const envelopeV1 = 1

// maxEnvelopeHeader bounds the header: version + 3 uvarints.
const maxEnvelopeHeader = 1 + 3*binary.MaxVarintLen64

// propKey identifies one proposal cluster-wide.
type propKey struct {
	node, incarnation, seq uint64
}

func encodeEnvelope(k propKey, payload []byte) []byte {
	b := make([]byte, 0, maxEnvelopeHeader+len(payload))
	b = append(b, envelopeV1)
	b = binary.AppendUvarint(b, k.node)
	b = binary.AppendUvarint(b, k.incarnation)
	b = binary.AppendUvarint(b, k.seq)
	return append(b, payload...)
}

var errBadEnvelope = errors.New("malformed proposal envelope")

func decodeEnvelope(b []byte) (propKey, []byte, error) {
	var k propKey
	if len(b) == 0 {
		return k, nil, errBadEnvelope
	}
	if b[0] != envelopeV1 {
		return k, nil, fmt.Errorf("%w: unknown version %d", errBadEnvelope, b[0])
	}
	b = b[1:]
	for _, dst := range []*uint64{&k.node, &k.incarnation, &k.seq} {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return k, nil, errBadEnvelope
		}
		*dst = v
		b = b[n:]
	}
	return k, b, nil
}

// confContext is the Context of every conf change this package proposes:
// the member being added (addresses) and, for the proposer, its waiter key.
// Bootstrap entries carry only Peer.
type confContext struct {
	Peer        Peer   `json:"peer"`
	Node        uint64 `json:"node,omitempty"`
	Incarnation uint64 `json:"inc,omitempty"`
	Seq         uint64 `json:"seq,omitempty"`
}

func (c confContext) key() propKey { return propKey{c.Node, c.Incarnation, c.Seq} }

func decodeConfContext(b []byte) (confContext, error) {
	var c confContext
	if len(b) == 0 {
		return c, nil
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("decode conf change context: %w", err)
	}
	return c, nil
}

// membership is the replicated view of the members' addresses. MaxID is the
// highest id ever admitted, so a removed id is never handed out again.
type membership struct {
	Version int    `json:"v"`
	MaxID   uint64 `json:"max_id"`
	Members []Peer `json:"members"`
}

func (m *membership) clone() membership {
	return membership{Version: 1, MaxID: m.MaxID, Members: slices.Clone(m.Members)}
}

func (m *membership) get(id uint64) (Peer, bool) {
	for _, p := range m.Members {
		if p.ID == id {
			return p, true
		}
	}
	return Peer{}, false
}

// upsert records p (sorted by id so every node encodes the same bytes).
func (m *membership) upsert(p Peer) {
	m.MaxID = max(m.MaxID, p.ID)
	for i := range m.Members {
		if m.Members[i].ID == p.ID {
			m.Members[i] = p
			return
		}
	}
	m.Members = append(m.Members, p)
	slices.SortFunc(m.Members, func(a, b Peer) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}

// removed reports whether id was a member and is no more: an id is
// admitted once and never reused (MaxID), so an id at or below MaxID that
// is not a member has been removed. Only meaningful for a membership as a
// whole (a stored or restored one): while the bootstrap entries apply one
// by one, a member listed after a higher id is briefly not yet a member.
func (m *membership) removed(id uint64) bool {
	_, ok := m.get(id)
	return !ok && id <= m.MaxID
}

// addressInUse refuses a raft or API address a member other than except
// has. Host names compare case-insensitively; names that resolve to the
// same host (localhost, 127.0.0.1) are not caught: resolving is not the
// raft loop's business.
func (m *membership) addressInUse(raftAddr, apiAddr string, except uint64) error {
	for _, p := range m.Members {
		if p.ID == except {
			continue
		}
		switch {
		case raftAddr != "" && strings.EqualFold(p.RaftAddr, raftAddr):
			return &AddressInUseError{Member: p.ID, Addr: raftAddr}
		case apiAddr != "" && strings.EqualFold(p.APIAddr, apiAddr):
			return &AddressInUseError{Member: p.ID, API: true, Addr: apiAddr}
		}
	}
	return nil
}

func (m *membership) remove(id uint64) {
	m.MaxID = max(m.MaxID, id)
	m.Members = slices.DeleteFunc(m.Members, func(p Peer) bool { return p.ID == id })
}

func (m *membership) encode() []byte {
	c := m.clone()
	b, err := json.Marshal(c)
	if err != nil {
		// Marshal of plain strings and integers cannot fail.
		panic(fmt.Sprintf("encode membership: %v", err))
	}
	return b
}

func decodeMembership(b []byte) (membership, error) {
	var m membership
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode membership: %w", err)
	}
	if m.Version != 1 {
		return m, fmt.Errorf("decode membership: unknown version %d", m.Version)
	}
	return m, nil
}

// A snapshot's Data carries the membership, so a node restored from a
// snapshot knows every member's address, and, when the snapshot is one a
// follower must install, the state machine image:
//
//	version byte | uvarint len(membership) | membership | image
//
// Version 1 has the image (what the leader sends, and what a follower stores
// until its state machine has restored it). Version 2 has none: it is the
// record of a snapshot this node took itself, whose state the state machine
// already holds durably at (or past) the snapshot's index, so only the
// metadata is written (see Node.maybeSnapshot).
//
// Version 3 has none either: the image travels as a stream next to the
// MsgSnap (images.go) and the receiver stages it in its log store under the
// snapshot's index before raft sees the message.
const (
	snapEnvelopeV1     = 1
	snapEnvelopeMeta   = 2
	snapEnvelopeStream = 3
)

// encodeSnapshotStreamed encodes the data of a snapshot whose image is
// streamed.
func encodeSnapshotStreamed(m *membership) []byte {
	return appendSnapshotData(snapEnvelopeStream, m, nil)
}

// snapshotStreamed reports whether snapshot data says its image is
// streamed (and staged by the receiver).
func snapshotStreamed(b []byte) bool { return len(b) > 0 && b[0] == snapEnvelopeStream }

func encodeSnapshotData(m *membership, image []byte) []byte {
	return appendSnapshotData(snapEnvelopeV1, m, image)
}

// encodeSnapshotMeta encodes the data of a snapshot without image.
func encodeSnapshotMeta(m *membership) []byte {
	return appendSnapshotData(snapEnvelopeMeta, m, nil)
}

func appendSnapshotData(version byte, m *membership, image []byte) []byte {
	meta := m.encode()
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(meta)+len(image))
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(len(meta)))
	b = append(b, meta...)
	return append(b, image...)
}

// decodeSnapshotData returns the membership and, if hasImage, the state
// machine image (a streamed snapshot has none inline: see snapshotStreamed).
func decodeSnapshotData(b []byte) (m membership, image []byte, hasImage bool, err error) {
	if len(b) == 0 || (b[0] != snapEnvelopeV1 && b[0] != snapEnvelopeMeta && b[0] != snapEnvelopeStream) {
		return membership{}, nil, false, errors.New("decode snapshot: unknown envelope version")
	}
	hasImage = b[0] == snapEnvelopeV1
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return membership{}, nil, false, errors.New("decode snapshot: bad membership length")
	}
	if m, err = decodeMembership(b[k : k+int(n)]); err != nil {
		return membership{}, nil, false, fmt.Errorf("decode snapshot: %w", err)
	}
	rest := b[k+int(n):]
	if !hasImage {
		if len(rest) > 0 {
			return membership{}, nil, false, errors.New("decode snapshot: metadata-only snapshot with trailing bytes")
		}
		return m, nil, false, nil
	}
	return m, rest, true, nil
}
