package txswitch

import (
	"slices"
	"strings"
	"unicode"
)

// HoldForReview decides whether a payment with method for the order oc is
// put on hold for manual review, and by which rule. Rules are tried in
// config order and the first whose conditions all match wins, so operators
// control precedence by ordering and the same input always names the same
// rule. A rule's conditions are the fields it sets:
//
//   - MinAmount: oc.Amount >= MinAmount, in the order's minor units; the
//     caller passes the order's amount, not the payment's, so splitting an
//     order into smaller payments does not dodge the threshold
//   - Currencies: the order's currency is listed (exactly one with
//     MinAmount: a threshold written for EUR means nothing in HUF)
//   - Countries: the customer's country is listed
//   - Methods: the payment method is listed
//   - EmailSuffix: the customer's email domain matches (see emailMatches)
//
// A rule with no condition matches nothing (Validate rejects it), so an
// empty rule in a half-written config cannot freeze every payment.
func HoldForReview(cfg *RoutingConfig, oc OrderContext, method string) (rule string, hold bool) {
	for i := range cfg.FraudRules {
		fr := &cfg.FraudRules[i]
		if fr.MinAmount == 0 && len(fr.Currencies) == 0 && len(fr.Countries) == 0 && len(fr.Methods) == 0 && fr.EmailSuffix == "" {
			continue
		}
		if fr.MinAmount > 0 && oc.Amount < fr.MinAmount {
			continue
		}
		if len(fr.Currencies) > 0 && !slices.Contains(fr.Currencies, oc.Currency) {
			continue
		}
		if len(fr.Countries) > 0 && !slices.Contains(fr.Countries, oc.Country) {
			continue
		}
		if len(fr.Methods) > 0 && !slices.Contains(fr.Methods, method) {
			continue
		}
		if fr.EmailSuffix != "" && !emailMatches(oc.Email, fr.EmailSuffix) {
			continue
		}
		return fr.Name, true
	}
	return "", false
}

// emailMatches compares the domain of email (after its last '@', case
// folded) with suffix, on label boundaries so that "mailinator.com" does not
// catch "notmailinator.com":
//
//   - "@example.com" matches exactly that domain;
//   - ".example.com" matches its subdomains only;
//   - "example.com" matches the domain and its subdomains.
//
// An email without '@' has no domain and matches nothing. The domain is
// taken as mail would be delivered to it: white space around it (a
// shopper's stray space, a newline), the root's trailing dot
// ("mailinator.com." is mailinator.com) and the '>' closing a
// "Name <a@b>" form are not part of it, so none of them slips an address
// past a rule.
func emailMatches(email, suffix string) bool {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return false
	}
	domain := strings.ToLower(strings.TrimLeftFunc(email[at+1:], unicode.IsSpace))
	domain = strings.TrimRightFunc(domain, func(r rune) bool { return unicode.IsSpace(r) || r == '.' || r == '>' })
	suffix = strings.ToLower(suffix)
	switch {
	case strings.HasPrefix(suffix, "@"):
		return domain == suffix[1:]
	case strings.HasPrefix(suffix, "."):
		return strings.HasSuffix(domain, suffix) && len(domain) > len(suffix)
	default:
		return domain == suffix || strings.HasSuffix(domain, "."+suffix)
	}
}
