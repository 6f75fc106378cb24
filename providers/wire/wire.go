package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Paths and headers of the protocol.
const (
	// PaymentsPrefix + op ("authorize", "capture", "refund", "cancel") is the
	// POST path of a money-moving call.
	PaymentsPrefix = "/v1/payments/"
	// StatusPrefix + url.PathEscape(idempotency key) is the GET path of a
	// status inquiry.
	StatusPrefix = "/v1/payments/status/"

	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderProcessed: "false" on a 502/503 means the PSP states it did not
	// process the request, so the caller may safely fail over. Any other
	// 5xx leaves the request in doubt.
	HeaderProcessed = "X-Processed"
)

// Size limits. Both ends enforce them: the server refuses bigger requests
// with 413, the client treats a bigger answer as malformed (in doubt).
const (
	MaxRequestBody  = 64 << 10
	MaxResponseBody = 64 << 10
	// MaxKeyLen bounds an idempotency key (API.md: 1..255 printable ASCII).
	MaxKeyLen = 255
)

// Error codes the PSP puts in ErrorBody.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	CodeUnavailable          = "unavailable"
	CodeLedgerFull           = "ledger_full"
	CodeBodyTooLarge         = "body_too_large"
	// CodeIdempotencyKeyFenced (409) refuses a request whose key an
	// earlier status inquiry found unknown: the PSP promised then that the
	// key would never be processed, so it is not (see sim's book.status).
	CodeIdempotencyKeyFenced = "idempotency_key_fenced"
)

// ErrorBody is the body of every non-2xx answer that is not a decline.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is a machine code and a human message.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// MoneyOps are the operations sent as POST /v1/payments/{op}.
var MoneyOps = []txswitch.ProviderOp{txswitch.OpAuthorize, txswitch.OpCapture, txswitch.OpRefund, txswitch.OpCancel}

// IsMoneyOp reports whether op moves (or holds, or releases) money.
func IsMoneyOp(op txswitch.ProviderOp) bool {
	for _, m := range MoneyOps {
		if m == op {
			return true
		}
	}
	return false
}

// ValidKey reports whether k is an acceptable idempotency key: 1..MaxKeyLen
// printable ASCII characters.
func ValidKey(k string) bool {
	if len(k) == 0 || len(k) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// DecodeRequest reads one JSON ProviderRequest of at most MaxRequestBody
// bytes and checks it against the op of the path and the Idempotency-Key
// header. An empty op or key in the body is taken from the path/header (the
// header is authoritative); a different one is an error, because a body that
// contradicts its envelope is a client bug we must not guess around.
// Unknown fields are accepted: fields may be added to the contract.
func DecodeRequest(r io.Reader, pathOp txswitch.ProviderOp, headerKey string) (txswitch.ProviderRequest, error) {
	var req txswitch.ProviderRequest
	if !ValidKey(headerKey) {
		return req, errors.New("missing or invalid Idempotency-Key header")
	}
	dec := json.NewDecoder(io.LimitReader(r, MaxRequestBody+1))
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("decode request body: %w", err)
	}
	if dec.More() {
		return req, errors.New("decode request body: trailing data after the JSON object")
	}
	if dec.InputOffset() > MaxRequestBody {
		return req, fmt.Errorf("request body exceeds %d bytes", MaxRequestBody)
	}
	if req.IdempotencyKey == "" {
		req.IdempotencyKey = headerKey
	}
	if req.IdempotencyKey != headerKey {
		return req, errors.New("idempotency_key in the body differs from the Idempotency-Key header")
	}
	if req.Op == "" {
		req.Op = pathOp
	}
	if req.Op != pathOp {
		return req, fmt.Errorf("op %q in the body differs from the path's %q", req.Op, pathOp)
	}
	if !IsMoneyOp(req.Op) {
		return req, fmt.Errorf("unknown op %q", req.Op)
	}
	return req, validate(req)
}

func validate(req txswitch.ProviderRequest) error {
	if req.PaymentID == "" {
		return errors.New("payment_id is required")
	}
	if req.Amount.Value < 0 {
		return errors.New("amount.value must not be negative")
	}
	if req.Op != txswitch.OpCancel && req.Amount.Value == 0 {
		return fmt.Errorf("amount.value must be positive for %s", req.Op)
	}
	if req.Amount.Value > 0 && !validCurrency(req.Amount.Currency) {
		return errors.New("amount.currency must be three upper-case letters (ISO 4217)")
	}
	if len(req.PaymentData) > 64 {
		return errors.New("payment_data has more than 64 entries")
	}
	if req.NotifyURL != "" && !strings.HasPrefix(req.NotifyURL, "http://") && !strings.HasPrefix(req.NotifyURL, "https://") {
		return errors.New("notify_url must be an http(s) URL")
	}
	return nil
}

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}

// ValidOutcome reports whether o is an outcome a PSP may answer for op:
// not_found only answers a status inquiry.
func ValidOutcome(op txswitch.ProviderOp, o txswitch.ProviderOutcome) bool {
	switch o {
	case txswitch.OutcomeApproved, txswitch.OutcomeDeclined, txswitch.OutcomePending:
		return true
	case txswitch.OutcomeNotFound:
		return op == txswitch.OpStatus
	}
	return false
}
