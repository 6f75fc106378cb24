package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client drives a simulated PSP running elsewhere (e.g. `txswitch
// sim-provider` in another process) through its control and inspection
// endpoints; chaos and scenario code use it where they cannot hold the
// *Server.
type Client struct {
	BaseURL string
	// HTTP defaults to a client with a 10 s timeout.
	HTTP *http.Client
}

// maxInspectBody bounds what the client reads from /ledger (the ledger is
// capped on the server; this only guards against a wrong URL).
const maxInspectBody = 256 << 20

var defaultControlHTTP = &http.Client{Timeout: 10 * time.Second}

// SetBehaviour replaces the behaviour.
func (c *Client) SetBehaviour(ctx context.Context, b Behaviour) error {
	body, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode behaviour: %w", err)
	}
	return c.do(ctx, http.MethodPost, "/control/behaviour", body, nil)
}

// ResetBehaviour undoes every fault.
func (c *Client) ResetBehaviour(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "/control/behaviour", nil, nil)
}

// Behaviour reads the current behaviour.
func (c *Client) Behaviour(ctx context.Context) (Behaviour, error) {
	var b Behaviour
	err := c.do(ctx, http.MethodGet, "/control/behaviour", nil, &b)
	return b, err
}

// Ledger reads the entries of paymentID ("" for all).
func (c *Client) Ledger(ctx context.Context, paymentID string) ([]LedgerEntry, error) {
	path := "/ledger"
	if paymentID != "" {
		path += "?payment_id=" + url.QueryEscape(paymentID)
	}
	var lr LedgerResponse
	err := c.do(ctx, http.MethodGet, path, nil, &lr)
	return lr.Entries, err
}

// Totals reads the PSP's money view of paymentID.
func (c *Client) Totals(ctx context.Context, paymentID string) (Totals, error) {
	var t Totals
	err := c.do(ctx, http.MethodGet, "/ledger/totals?payment_id="+url.QueryEscape(paymentID), nil, &t)
	return t, err
}

// Stats reads the counters.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := c.do(ctx, http.MethodGet, "/control/stats", nil, &s)
	return s, err
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	hc := c.HTTP
	if hc == nil {
		hc = defaultControlHTTP
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sim control %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("sim control %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxInspectBody))
	if err != nil {
		return fmt.Errorf("sim control %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sim control %s %s: status %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("sim control %s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}
