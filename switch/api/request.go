package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"mime"
	"strings"

	"github.com/valyala/fasthttp"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Limits of request metadata.
const (
	maxIDLen       = 128 // a path id longer than this cannot exist
	maxAPIKeyLen   = 512
	maxIdemKeyLen  = 255 // API.md: 1..255 printable ASCII
	maxProviderLen = 64
)

func unauthorized(msg string) error {
	return txswitch.NewError(txswitch.KindUnauthorized, "unauthorized", "", msg)
}

// checkParam rejects path parameters that no resource can have: a resource
// that cannot exist is 404, like one that does not.
func checkParam(pattern, p string) error {
	switch {
	case p == "":
		return nil
	case strings.HasSuffix(pattern, "/members/{id}"):
		_, err := memberID(p)
		return err
	case strings.Contains(pattern, "{provider}"):
		if len(p) > maxProviderLen || !isProviderName(p) {
			return txswitch.NewError(404, "not_found", "", "unknown provider")
		}
	default:
		if len(p) > maxIDLen || !isToken([]byte(p)) {
			return txswitch.NewError(404, "not_found", "", "no such resource")
		}
	}
	return nil
}

func isProviderName(p string) bool {
	for i := range len(p) {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return p != ""
}

// bearer extracts the token of "Authorization: Bearer <token>".
func bearer(h *fasthttp.RequestHeader) ([]byte, bool) {
	v := h.Peek("Authorization")
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(string(v[:len(scheme)]), scheme) {
		return nil, false
	}
	tok := bytes.TrimLeft(v[len(scheme):], " ")
	if len(tok) == 0 || len(tok) > maxAPIKeyLen || !isToken(tok) {
		return nil, false
	}
	return tok, true
}

// authenticate checks the caller of rc according to its route, filling
// rc.caller for merchants. Followers authenticate too, so a bad key is
// refused without a round trip to the leader (which authenticates again:
// nothing trusts a forwarded request more than a direct one).
func (s *Server) authenticate(rc *reqCtx, body []byte) error {
	h := &rc.fc.Request.Header
	switch rc.route.auth {
	case authMerchant:
		key, ok := bearer(h)
		if !ok {
			return unauthorized("send Authorization: Bearer <api key>")
		}
		merchant, err := s.svc.Authenticate(rc.ctx, string(key))
		if err != nil {
			return err
		}
		if merchant == "" {
			return unauthorized("unknown API key")
		}
		rc.caller.MerchantID = merchant
	case authAdmin:
		tok, ok := bearer(h)
		if !ok {
			return unauthorized("send Authorization: Bearer <admin token>")
		}
		// Comparing digests keeps the comparison constant-time in the
		// token's length as well as its content.
		got := sha256.Sum256(tok)
		if subtle.ConstantTimeCompare(got[:], s.adminHash[:]) != 1 {
			return unauthorized("wrong admin token")
		}
	case authProvider:
		secret := s.opts.ProviderSecrets[rc.id]
		if secret == "" {
			return unauthorized("no notification secret is configured for provider " + rc.id)
		}
		sig := h.Peek(hdrSignature)
		want := make([]byte, sha256.Size)
		if len(sig) != 2*sha256.Size {
			return unauthorized("send X-Provider-Signature: hex HMAC-SHA256 of the body")
		}
		if _, err := hex.Decode(want, sig); err != nil {
			return unauthorized("X-Provider-Signature is not hex")
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		if !hmac.Equal(mac.Sum(nil), want) {
			return unauthorized("wrong X-Provider-Signature")
		}
	}
	return nil
}

// idempotencyKey validates the optional Idempotency-Key header: at most
// one, 1..255 printable ASCII characters (0x20..0x7E).
func idempotencyKey(h *fasthttp.RequestHeader) (string, error) {
	vals := h.PeekAll(hdrIdemKey)
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", invalidKey("send at most one Idempotency-Key header")
	}
	v := vals[0]
	if len(v) == 0 || len(v) > maxIdemKeyLen {
		return "", invalidKey("Idempotency-Key must be 1 to 255 characters")
	}
	for _, c := range v {
		if c < 0x20 || c > 0x7e {
			return "", invalidKey("Idempotency-Key must be printable ASCII")
		}
	}
	return string(v), nil
}

func invalidKey(msg string) error {
	return txswitch.NewError(txswitch.KindInvalid, "invalid_idempotency_key", "Idempotency-Key", msg)
}

// decodeBody checks the content type and decodes body for rt.
func decodeBody(rt *route, h *fasthttp.RequestHeader, body []byte) (any, error) {
	empty := len(bytes.TrimSpace(body)) == 0
	if empty {
		switch rt.body {
		case bodyRequired:
			return nil, txswitch.NewError(txswitch.KindInvalid, "missing_body", "", "a JSON request body is required")
		case bodyEmpty:
			return nil, nil
		}
		return rt.decode(nil)
	}
	if err := checkContentType(h.ContentType()); err != nil {
		return nil, err
	}
	if rt.body == bodyEmpty {
		var none struct{}
		return nil, decodeStrict(body, &none)
	}
	return rt.decode(body)
}

// checkContentType accepts application/json with at most a UTF-8 charset.
func checkContentType(ct []byte) error {
	mt, params, err := mime.ParseMediaType(string(ct))
	if err == nil && mt == "application/json" {
		cs, has := params["charset"]
		if !has || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	return txswitch.NewError(415, "unsupported_media_type", "",
		"send the body as Content-Type: application/json")
}
