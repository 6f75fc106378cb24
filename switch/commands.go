package txswitch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Commands are the entries of the replicated log: versioned JSON envelopes
// {"v":1,"type":"…",…}. Everything apply decides on is inside the command —
// timestamps, ids, the routing decision, the breaker states seen, the
// provider's answer — so every node computes the same state.
//
// Versioning: a node reads the command versions N-1 and N and writes N only
// after the cluster version gate (version.go) has moved to N. Today N = 1,
// so only version 1 exists; when version 2 comes, decodeCommand keeps
// accepting version 1 and maps it onto the version 2 structs, and the
// proposers of the new format check Svc.VersionActive(2).
const (
	CommandVersion    = 1
	minCommandVersion = 1
)

// MaxCommandSize bounds a command; larger data is rejected by decodeCommand
// (and never proposed by the service) so one entry cannot bloat the log.
const MaxCommandSize = 1 << 20

// Command types.
const (
	cmdTypeCreateOrder    = "create_order"
	cmdTypePaymentIntent  = "payment_intent"
	cmdTypePaymentResult  = "payment_result"
	cmdTypeReview         = "review"
	cmdTypeOpIntent       = "op_intent"
	cmdTypeOpResult       = "op_result"
	cmdTypeMethodsOffered = "methods_offered"
	cmdTypeNotify         = "notify"
	cmdTypeConfigPut      = "config_put"
	cmdTypeWatermark      = "export_watermark"
	cmdTypeExpireIdem     = "expire_idempotency"
)

// Operation kinds on an existing payment.
const (
	opCapture = "capture"
	opRefund  = "refund"
	opCancel  = "cancel"
)

// Outcomes carried by result commands: the provider's outcomes plus the
// switch's own verdicts about a call that produced no result.
const (
	outcomeApproved = string(OutcomeApproved)
	outcomeDeclined = string(OutcomeDeclined)
	outcomePending  = string(OutcomePending)
	outcomeNotFound = string(OutcomeNotFound)
	outcomeFailed   = "failed"   // definitive error: the provider did not process it
	outcomeInDoubt  = "in_doubt" // non-definitive error: it may have processed it
)

// Where a result came from.
const (
	sourceCall         = "call"
	sourceResolver     = "resolver"
	sourceNotification = "notification"
)

type cmdHeader struct {
	V    int    `json:"v"`
	Type string `json:"type"`
}

// stamp sets the header; every command embeds cmdHeader, so every command
// pointer has it.
func (h *cmdHeader) stamp(v cmdHeader) { *h = v }

func (h *cmdHeader) header() cmdHeader { return *h }

// idemRef names an idempotency record and the fingerprint of the request
// that wants it.
type idemRef struct {
	Merchant    string `json:"merchant"`
	Key         string `json:"key"`
	Fingerprint string `json:"fingerprint"`
}

type cmdCreateOrder struct {
	cmdHeader
	At    time.Time `json:"at"`
	Idem  *idemRef  `json:"idem,omitempty"`
	Order Order     `json:"order"` // id, merchant and request fields; status set by apply
}

type cmdPaymentIntent struct {
	cmdHeader
	At          time.Time         `json:"at"`
	Idem        *idemRef          `json:"idem,omitempty"`
	MerchantID  string            `json:"merchant_id"`
	OrderID     string            `json:"order_id"`
	PaymentID   string            `json:"payment_id"`
	Method      string            `json:"method"`
	Amount      Money             `json:"amount"`
	Surcharge   Money             `json:"surcharge"`
	CaptureMode string            `json:"capture"`
	PaymentData map[string]string `json:"payment_data,omitempty"`
	// Candidates are the providers routing returned with the breaker
	// states seen; Provider is the one attempt 1 goes to ("" when none is
	// usable: the payment fails with no_provider_available).
	Candidates []RouteCandidate `json:"candidates"`
	Provider   string           `json:"provider,omitempty"`
	NoRoute    string           `json:"no_route,omitempty"` // why no provider is usable
	HoldRule   string           `json:"hold_rule,omitempty"`
}

// nextAttempt opens attempt n+1 at another provider (failover).
type nextAttempt struct {
	Provider   string           `json:"provider"`
	Candidates []RouteCandidate `json:"candidates"`
}

type cmdPaymentResult struct {
	cmdHeader
	At         time.Time      `json:"at"`
	PaymentID  string         `json:"payment_id"`
	Attempt    int            `json:"attempt"`
	Source     string         `json:"source"`
	Outcome    string         `json:"outcome"`
	Result     ProviderResult `json:"result"`
	ErrCode    string         `json:"err_code,omitempty"`
	ErrMessage string         `json:"err_message,omitempty"`
	LatencyMs  int64          `json:"latency_ms"`
	// Next is set with outcome "failed" when another candidate is left.
	Next *nextAttempt `json:"next,omitempty"`
}

type cmdReview struct {
	cmdHeader
	At        time.Time `json:"at"`
	PaymentID string    `json:"payment_id"`
	Decision  string    `json:"decision"`
	Note      string    `json:"note,omitempty"`
	// On approve: where attempt 1 goes.
	Provider   string           `json:"provider,omitempty"`
	Candidates []RouteCandidate `json:"candidates,omitempty"`
	NoRoute    string           `json:"no_route,omitempty"`
	// On reviewWithdraw (from VersionWithdrawHeld): the merchant's cancel
	// request and the key its answer is bound to.
	MerchantID string   `json:"merchant_id,omitempty"`
	Idem       *idemRef `json:"idem,omitempty"`
}

type cmdOpIntent struct {
	cmdHeader
	At         time.Time `json:"at"`
	Idem       *idemRef  `json:"idem,omitempty"`
	Kind       string    `json:"kind"`
	MerchantID string    `json:"merchant_id"`
	PaymentID  string    `json:"payment_id"`
	OpID       string    `json:"op_id"`
	Amount     Money     `json:"amount"`
	Reason     string    `json:"reason,omitempty"`
	Channel    string    `json:"channel,omitempty"`
}

type cmdOpResult struct {
	cmdHeader
	At         time.Time      `json:"at"`
	Kind       string         `json:"kind"`
	PaymentID  string         `json:"payment_id"`
	OpID       string         `json:"op_id"`
	Source     string         `json:"source"`
	Outcome    string         `json:"outcome"`
	Result     ProviderResult `json:"result"`
	ErrCode    string         `json:"err_code,omitempty"`
	ErrMessage string         `json:"err_message,omitempty"`
	LatencyMs  int64          `json:"latency_ms"`
}

type cmdMethodsOffered struct {
	cmdHeader
	At      time.Time       `json:"at"`
	OrderID string          `json:"order_id"`
	Offer   MethodsResponse `json:"offer"`
}

type cmdNotify struct {
	cmdHeader
	At           time.Time            `json:"at"`
	Provider     string               `json:"provider"`
	Notification ProviderNotification `json:"notification"`
}

type cmdConfigPut struct {
	cmdHeader
	At     time.Time     `json:"at"`
	Config RoutingConfig `json:"config"`
	// OnlyIfAbsent makes the command a no-op when a config exists
	// (bootstrap by every node racing is then harmless).
	OnlyIfAbsent bool `json:"only_if_absent,omitempty"`
}

type cmdWatermark struct {
	cmdHeader
	Seq uint64 `json:"seq"`
}

type cmdExpireIdem struct {
	cmdHeader
	Before time.Time `json:"before"`
	// Limit bounds the deletions of one command (0: DefaultExpireLimit), so
	// one entry never turns into an unbounded batch.
	Limit int `json:"limit,omitempty"`
	// After, from cluster version VersionProviderAmount, starts the scan
	// after this index key: records still in progress (kept) at the front
	// of the index no longer make every command scan them again and
	// delete nothing, which stopped expiry for good once a full batch of
	// them was there.
	After []byte `json:"after,omitempty"`
}

// DefaultExpireLimit bounds the idempotency records one expire command
// deletes; housekeeping proposes again while a full batch was deleted.
const DefaultExpireLimit = 1000

// encodeCommand stamps the header and marshals a command.
func encodeCommand(typ string, cmd any) ([]byte, error) {
	h, ok := cmd.(interface{ stamp(cmdHeader) })
	if !ok {
		return nil, fmt.Errorf("encode command: %T is not a command (it embeds no cmdHeader)", cmd)
	}
	h.stamp(cmdHeader{CommandVersion, typ})
	data, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", typ, err)
	}
	if len(data) > MaxCommandSize {
		return nil, fmt.Errorf("encode %s command: %d bytes exceeds %d", typ, len(data), MaxCommandSize)
	}
	return data, nil
}

// decodeCommand parses a command. Anything it cannot parse — unknown
// version or type, malformed JSON, oversize — is an error that apply turns
// into a rejection result: a node never panics on a log entry.
func decodeCommand(data []byte) (any, error) {
	if len(data) > MaxCommandSize {
		return nil, fmt.Errorf("command of %d bytes exceeds %d", len(data), MaxCommandSize)
	}
	if cmd, ok := decodeCommandFast(data); ok {
		return cmd, nil
	}
	var h cmdHeader
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("command header: %w", err)
	}
	if h.V < minCommandVersion || h.V > CommandVersion {
		return nil, fmt.Errorf("command version %d not supported (this node reads %d..%d)", h.V, minCommandVersion, CommandVersion)
	}
	cmd := newCommand(h.Type)
	if cmd == nil {
		return nil, fmt.Errorf("unknown command type %q", h.Type)
	}
	if err := json.Unmarshal(data, cmd); err != nil {
		return nil, fmt.Errorf("%s command: %w", h.Type, err)
	}
	return cmd, nil
}

// fastHeader is how encodeCommand starts every command it writes.
const fastHeader = `{"v":1,"type":"`

// decodeCommandFast decodes a command encodeCommand wrote in one Unmarshal
// instead of two (header, then body). It reports false for anything else
// (and for any failure), and decodeCommand then takes the general path, so
// results and error messages are exactly the general path's. The embedded
// header after the full Unmarshal holds the last "v" and "type" of the
// document, exactly what the header-only Unmarshal would have seen.
func decodeCommandFast(data []byte) (any, bool) {
	if !bytes.HasPrefix(data, []byte(fastHeader)) {
		return nil, false
	}
	rest := data[len(fastHeader):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil, false
	}
	typ := string(rest[:end])
	if cmd, ok := decodeCanonical(typ, data); ok {
		return cmd, true
	}
	cmd := newCommand(typ)
	if cmd == nil {
		return nil, false
	}
	if err := json.Unmarshal(data, cmd); err != nil {
		return nil, false
	}
	if h := headerOf(cmd); h.V != CommandVersion || h.Type != typ {
		return nil, false
	}
	return cmd, true
}

// headerOf returns the embedded header of a command newCommand made.
func headerOf(cmd any) cmdHeader {
	if h, ok := cmd.(interface{ header() cmdHeader }); ok {
		return h.header()
	}
	return cmdHeader{}
}

// newCommand returns a new command of type typ (nil if unknown).
func newCommand(typ string) any {
	var cmd any
	switch typ {
	case cmdTypeCreateOrder:
		cmd = &cmdCreateOrder{}
	case cmdTypePaymentIntent:
		cmd = &cmdPaymentIntent{}
	case cmdTypePaymentResult:
		cmd = &cmdPaymentResult{}
	case cmdTypeReview:
		cmd = &cmdReview{}
	case cmdTypeOpIntent:
		cmd = &cmdOpIntent{}
	case cmdTypeOpResult:
		cmd = &cmdOpResult{}
	case cmdTypeMethodsOffered:
		cmd = &cmdMethodsOffered{}
	case cmdTypeNotify:
		cmd = &cmdNotify{}
	case cmdTypeConfigPut:
		cmd = &cmdConfigPut{}
	case cmdTypeWatermark:
		cmd = &cmdWatermark{}
	case cmdTypeExpireIdem:
		cmd = &cmdExpireIdem{}
	case cmdTypeExpireNotify:
		cmd = &cmdExpireNotify{}
	case cmdTypeResolveManually:
		cmd = &cmdResolveManually{}
	case cmdTypeResolveOpManually:
		cmd = &cmdResolveOpManually{}
	case cmdTypePaymentExpire:
		cmd = &cmdPaymentExpire{}
	case cmdTypeOrderExpire:
		cmd = &cmdOrderExpire{}
	case cmdTypeNodeVersion:
		cmd = &cmdNodeVersion{}
	case cmdTypeClusterVersion:
		cmd = &cmdClusterVersion{}
	}
	return cmd
}

// expiryResult is the reply of an expiry command (idempotency records,
// notification markers).
type expiryResult struct {
	Deleted int `json:"deleted"`
	Scanned int `json:"scanned"`
	// Last is the last index key scanned (the next command's After).
	Last []byte `json:"last,omitempty"`
}
