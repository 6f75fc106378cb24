package txswitch

import (
	"fmt"
	"strings"
)

// Human messages for timeline events. They are built in apply from
// command data only, so they are deterministic too.

func routingMessage(method string, attempt int, provider string, cands []RouteCandidate, noRoute string) string {
	var seen []string
	for _, c := range cands {
		s := c.Provider + " " + string(c.Breaker)
		if c.Skipped {
			s += " (skipped: " + c.SkipReason + ")"
		}
		seen = append(seen, s)
	}
	breakers := "no candidates"
	if len(seen) > 0 {
		breakers = "breakers: " + strings.Join(seen, ", ")
	}
	if provider == "" {
		return fmt.Sprintf("No provider available for %s (%s)%s.", method, breakers, suffix(noRoute))
	}
	return fmt.Sprintf("Routed %s attempt %d to %s (%s).", method, attempt, provider, breakers)
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

func responseMessage(provider, source, outcome, code, msg string, latencyMs int64) string {
	var what string
	switch outcome {
	case outcomeApproved:
		what = "approved"
	case outcomeDeclined:
		what = "declined (" + firstNonEmpty(code, "declined") + ")"
	case outcomePending:
		what = "pending: the shopper completes it at the provider"
	case outcomeNotFound:
		what = "never received the request"
	case outcomeInDoubt:
		what = "gave no definite answer (" + firstNonEmpty(code, "error") + ")"
	default:
		what = "failed without processing (" + firstNonEmpty(code, "error") + ")"
	}
	if msg != "" && outcome != outcomeApproved {
		what += ": " + msg
	}
	switch source {
	case sourceResolver:
		return fmt.Sprintf("Status inquiry at %s: %s.", provider, what)
	case sourceNotification:
		return fmt.Sprintf("Notification from %s: %s.", provider, what)
	case sourceExpiry:
		return fmt.Sprintf("%s answered the cancellation of the expired attempt in %d ms: %s.", provider, latencyMs, what)
	case sourceOperator:
		return fmt.Sprintf("Recorded by an operator for %s: %s.", provider, what)
	}
	return fmt.Sprintf("%s answered in %d ms: %s.", provider, latencyMs, what)
}

func offerMessage(r MethodsResponse) string {
	var on, off []string
	for _, m := range r.Methods {
		on = append(on, m.Method)
	}
	for _, x := range r.Excluded {
		off = append(off, x.Method+" ("+x.Reason+")")
	}
	s := "Methods offered: " + orDash(strings.Join(on, ", "))
	if len(off) > 0 {
		s += "; not offered: " + strings.Join(off, ", ")
	}
	return s + "."
}

func orDash(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
