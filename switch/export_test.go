package txswitch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"time"
)

// CheckRecordCache verifies that every record m caches across Apply calls
// is exactly what decoding the committed store value gives, and returns how
// many entries it checked. It is the coherence invariant of rcache.go,
// checked from the outside after each Apply.
func CheckRecordCache(m *Machine) (int, error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	var keys []string
	for k := range m.records.cur {
		keys = append(keys, k)
	}
	for k := range m.records.old {
		keys = append(keys, k)
	}
	if m.seqKnown {
		seq, err := readUint(m.store, keyOutboxSeq)
		if err != nil {
			return 0, err
		}
		if seq != m.outboxSeq {
			return 0, fmt.Errorf("cached outbox seq %d, store has %d", m.outboxSeq, seq)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := m.records.cur[k]
		if v == nil {
			v = m.records.old[k]
		}
		raw, err := m.store.Get([]byte(k))
		if err != nil {
			return 0, fmt.Errorf("cached %q: store: %w", k, err)
		}
		fresh := reflect.New(reflect.TypeOf(v).Elem())
		if err := json.Unmarshal(raw, fresh.Interface()); err != nil {
			return 0, fmt.Errorf("cached %q: decode: %w", k, err)
		}
		cached := cloneRecord(v)
		if o, ok := cached.(*orderRec); ok {
			if o.idsKnown {
				ids, err := scanOrderPaymentIDs(m.store, o.ID)
				if err != nil {
					return 0, err
				}
				if !slices.Equal(ids, o.paymentIDs) {
					return 0, fmt.Errorf("cached %q: payment ids %v, index says %v", k, o.paymentIDs, ids)
				}
			}
			o.paymentIDs, o.idsKnown = nil, false
		}
		if !reflect.DeepEqual(cached, fresh.Interface()) {
			return 0, fmt.Errorf("cached %q differs from the store:\ncached %+v\nstore  %+v", k, cached, fresh.Interface())
		}
		// And it encodes back to the stored bytes.
		enc, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(enc, raw) {
			return 0, fmt.Errorf("cached %q encodes to\n%s\nstore has\n%s", k, enc, raw)
		}
	}
	return len(keys), nil
}

// RecordCacheLen is the number of records cached across Apply calls.
func RecordCacheLen(m *Machine) int {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	return len(m.records.cur) + len(m.records.old)
}

// SetFilterScanChunk sets how many keys the key filter's catch-up scan
// reads per Apply, and returns a func restoring the previous value.
func SetFilterScanChunk(n int) (restore func()) {
	prev := filterScanChunk
	filterScanChunk = n
	return func() { filterScanChunk = prev }
}

// KeyFilterReady reports whether m's key filter has caught up with the
// store (it answers "maybe" to everything before).
func KeyFilterReady(m *Machine) bool {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	return m.filter.Load().done.Load()
}

// SetRecordCacheLimit replaces m's record cache by an empty one of
// generations of limit entries.
func SetRecordCacheLimit(m *Machine, limit int) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.records = newRecordCache(limit)
}

// NodeVersionCommand is the encoded report of member node's binary.
func NodeVersionCommand(node uint64, r VersionRange) []byte {
	return mustEncode(cmdTypeNodeVersion, &cmdNodeVersion{Node: node, Supports: r})
}

// ClusterVersionCommand is the encoded move of the gate to to.
func ClusterVersionCommand(to int, members ...uint64) []byte {
	return mustEncode(cmdTypeClusterVersion, &cmdClusterVersion{To: to, Members: members})
}

// ConfigPutCommand is the encoded replacement of the routing
// configuration by cfg, as PutConfig proposes it.
func ConfigPutCommand(cfg RoutingConfig, at time.Time) []byte {
	return mustEncode(cmdTypeConfigPut, &cmdConfigPut{At: at, Config: cfg})
}

// OpIntentCommand is the encoded intent of a capture or refund ("capture",
// "refund") of amount, as the service proposes it after its own checks: a
// test proposes it to play a request whose checks raced another's.
func OpIntentCommand(kind, merchant, paymentID, opID string, amount Money, at time.Time) []byte {
	return mustEncode(cmdTypeOpIntent, &cmdOpIntent{At: at, Kind: kind, MerchantID: merchant, PaymentID: paymentID, OpID: opID, Amount: amount})
}

func mustEncode(typ string, cmd any) []byte {
	b, err := encodeCommand(typ, cmd)
	if err != nil {
		panic(err)
	}
	return b
}
