package txswitch

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Key layout of the state machine's key space. Every key starts with a
// one- or two-letter table prefix and a slash; variable parts that may
// contain '/' (merchant ids, client idempotency keys) are separated by a NUL
// byte, which API input cannot contain. Numbers are fixed-width big-endian
// hex so that byte order is numeric order. A Raft group id could later be
// prepended to every key without changing the tables (multi-Raft).
//
//	o/<order id>                          orderRec (Order without payments, payment count, timeline seq)
//	p/<payment id>                        paymentRec (Payment with captures and refunds, open attempt)
//	op/<order id>/<%016x n>               payment id: the order→payments index, in creation order
//	t/<order id>/<%016x seq>              TimelineEvent, seq dense per order from 1
//	i/<merchant>\x00<idempotency key>     idemRecord (fingerprint, state, stored Reply, created_at)
//	ie/<%016x unix nanos>/<merchant>\x00<key>   empty: idempotency records by creation time, for expiry
//	d/<provider idempotency key>          inDoubtRec: an intent (payment attempt, capture, refund, cancel) without a final result
//	n/<provider>\x00<notification id>     empty: notifications already applied (dedup)
//	x/<%016x seq>                         outboxRecord (an OutboxEvent, or a reference to its resource), seq dense from 1
//	m/outbox_seq                          last assigned outbox seq (8 bytes big-endian)
//	m/watermark                           export watermark (8 bytes big-endian)
//	m/config                              RoutingConfig JSON
//	oe/<%016x unix nanos>/<order id>      empty: orders by expiry time, for the order expiry sweep (cluster version 2)
//	m/cluster_version                     the cluster version gate (8 bytes big-endian; absent: 1)
//	m/node_version/<member id>            VersionRange JSON: what that member's binary supports
//	m/provider_payments/<provider>        providerMark JSON: the provider approved a payment, so it stays configured (cluster version 11)
//	oi/<operation id>                     payment id of a capture or refund, for its late notifications (cluster version 11)
const (
	prefixOrder         = "o/"
	prefixPayment       = "p/"
	prefixOrderPayments = "op/"
	prefixTimeline      = "t/"
	prefixIdem          = "i/"
	prefixIdemExpiry    = "ie/"
	prefixInDoubt       = "d/"
	prefixNotification  = "n/"
	prefixOutbox        = "x/"
	keyOutboxSeq        = "m/outbox_seq"
	keyWatermark        = "m/watermark"
	keyConfig           = "m/config"
	prefixOrderExpiry   = "oe/"
	keyClusterVersion   = "m/cluster_version"
	prefixNodeVersion   = "m/node_version/"
	prefixProviderMark  = "m/provider_payments/"
	prefixOpPayment     = "oi/"
)

func orderKey(id string) []byte   { return []byte(prefixOrder + id) }
func paymentKey(id string) []byte { return []byte(prefixPayment + id) }

func orderPaymentKey(orderID string, n int) []byte {
	if n < 0 {
		return fmt.Appendf(nil, "%s%s/%016x", prefixOrderPayments, orderID, n)
	}
	return appendHex16(append(append([]byte(prefixOrderPayments), orderID...), '/'), uint64(n))
}

func orderPaymentsRange(orderID string) (start, end []byte) {
	return prefixRange(prefixOrderPayments + orderID + "/")
}

func timelineKey(orderID string, seq uint64) []byte {
	b := make([]byte, 0, len(prefixTimeline)+len(orderID)+17)
	return appendHex16(append(append(append(b, prefixTimeline...), orderID...), '/'), seq)
}

func timelineRange(orderID string) (start, end []byte) {
	return prefixRange(prefixTimeline + orderID + "/")
}

func idemKey(merchant, key string) []byte {
	return []byte(prefixIdem + merchant + "\x00" + key)
}

func idemExpiryKey(at time.Time, merchant, key string) []byte {
	b := make([]byte, 0, len(prefixIdemExpiry)+18+len(merchant)+len(key))
	b = appendHex16(append(b, prefixIdemExpiry...), uint64(max(at.UnixNano(), 0)))
	b = append(append(append(b, '/'), merchant...), 0)
	return append(b, key...)
}

// idemExpiryBefore is the end (exclusive) of the expiry index for records
// created before t.
func idemExpiryBefore(t time.Time) []byte {
	return fmt.Appendf(nil, "%s%016x/", prefixIdemExpiry, uint64(max(t.UnixNano(), 0)))
}

func inDoubtKey(providerKey string) []byte { return []byte(prefixInDoubt + providerKey) }

func notificationKey(provider, id string) []byte {
	return []byte(prefixNotification + provider + "\x00" + id)
}

func outboxKey(seq uint64) []byte {
	return appendHex16(append(make([]byte, 0, len(prefixOutbox)+16), prefixOutbox...), seq)
}

// appendHex16 appends v as fmt's %016x does (lower-case hex, zero-padded
// to 16 digits: every uint64 fits).
func appendHex16(b []byte, v uint64) []byte {
	const hex = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hex[(v>>uint(shift))&0xf])
	}
	return b
}

// prefixRange is [p, p with its last byte incremented): every key starting
// with p. Prefixes here end in '/', so incrementing never overflows.
func prefixRange(p string) (start, end []byte) {
	start = []byte(p)
	end = []byte(p)
	end[len(end)-1]++
	return start, end
}

func encodeUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeUint64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("want 8 bytes, got %d", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
