package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// The routing configuration is changed at runtime (PUT /v1/admin/config),
// so a mistake reaches shoppers at once. `txswitch config` lets an operator
// (or the CI job of the repository that holds the configuration) check a
// file with the cluster's own validation and see which methods it would
// offer to which shopper before it goes live, then fetch and replace the
// live one with the optimistic-concurrency check of its version.

func init() {
	register("config", "check a routing configuration, preview the methods it offers, get or put the live one", runConfig)
}

// maxConfigFile bounds a configuration read from a file or a node: the
// admin API accepts 1 MiB; a little slack keeps the error the server's.
const maxConfigFile = 2 << 20

// maxAdminAnswer bounds what adminCall reads of an answer (a status or a
// configuration).
const maxAdminAnswer = 4 << 20

const configUsage = `Usage:
  txswitch config example [--merchant-key KEY] [--provider psp_a=https://...] > routing.json
  txswitch config check   --file routing.json
  txswitch config methods --file routing.json --country NL[,BE,...] --currency EUR --amount 49.98 [--channel online]
  txswitch config methods --addr HOST:PORT ...   (the live configuration instead of a file)
  txswitch config get     --addr HOST:PORT [--admin-token T] > routing.json
  txswitch config put     --addr HOST:PORT [--admin-token T] --file routing.json

example prints the configuration the demo runs (its methods, three
providers, fraud rules) with one merchant, as a file to start from: the
merchant's API key is --merchant-key (a new random one, printed on stderr,
without it), and each provider's base_url is its --provider (a placeholder
without it). check runs the validation a node runs on PUT /v1/admin/config. methods
shows, per country, the methods the configuration offers to such an order
(with surcharge and providers in priority order) and why each other method
is not offered, taking every provider as up (the live answer, with the
breakers, is GET /v1/orders/{id}/methods). put sends the file's "version":
the node refuses it if the live configuration changed since that version
(0 skips the check).
`

func runConfig(args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(os.Stderr, configUsage)
		return errUsage
	}
	switch args[0] {
	case "example":
		return configExample(os.Stdout, os.Stderr, args[1:])
	case "check":
		return configCheck(os.Stdout, args[1:])
	case "methods":
		return configMethods(os.Stdout, args[1:])
	case "get":
		return configGet(os.Stdout, args[1:])
	case "put":
		return configPut(os.Stdout, args[1:])
	}
	fmt.Fprintf(os.Stderr, "txswitch config: unknown action %q\n\n%s", args[0], configUsage)
	return errUsage
}

// errInvalidConfig marks a configuration that failed validation, as
// opposed to one that could not be read.
var errInvalidConfig = errors.New("invalid routing configuration")

// decodeConfig decodes a configuration as the admin API does: strictly
// (an unknown field is a typo that would otherwise be dropped silently),
// one JSON value, then Validate.
func decodeConfig(b []byte, source string) (txswitch.RoutingConfig, error) {
	var cfg txswitch.RoutingConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("%w: %s: %v", errInvalidConfig, source, err)
	}
	if dec.More() {
		return cfg, fmt.Errorf("%w: %s: more than one JSON value", errInvalidConfig, source)
	}
	if e := cfg.Validate(); e != nil {
		field := ""
		if e.Field != "" {
			field = " (at " + e.Field + ")"
		}
		return cfg, fmt.Errorf("%w: %s%s: %s", errInvalidConfig, source, field, e.Message)
	}
	return cfg, nil
}

func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read routing configuration: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxConfigFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxConfigFile)
	}
	return b, nil
}

// loadConfigFile reads and checks the configuration of a --file flag
// (required: its absence is a usage error).
func loadConfigFile(fs *flag.FlagSet, path string) ([]byte, txswitch.RoutingConfig, error) {
	if path == "" {
		fs.Usage()
		return nil, txswitch.RoutingConfig{}, errUsage
	}
	b, err := readConfigFile(path)
	if err != nil {
		return nil, txswitch.RoutingConfig{}, err
	}
	cfg, err := decodeConfig(b, path)
	return b, cfg, err
}

// providerURLs is a repeatable --provider name=url flag.
type providerURLs map[string]string

func (p providerURLs) String() string { return fmt.Sprint(map[string]string(p)) }

func (p providerURLs) Set(v string) error {
	name, url, ok := strings.Cut(v, "=")
	if !ok || name == "" || url == "" {
		return fmt.Errorf("want name=url, got %q", v)
	}
	if !slices.Contains(txswitch.DefaultProviderNames(), name) {
		return fmt.Errorf("provider %q is not one of %s", name, strings.Join(txswitch.DefaultProviderNames(), ", "))
	}
	p[name] = url
	return nil
}

// configExample writes a starting configuration to w: the demo's, with
// one merchant. A new key, when it makes one, goes to notes (stderr), so
// that w holds only the file.
func configExample(w, notes io.Writer, args []string) error {
	fs := newFlags("config example", "[--merchant-key KEY] [--merchant-id ID] [--provider psp_a=https://psp-a.example ...]")
	key := fs.String("merchant-key", "", "the merchant's API key (default: a new random one, printed on stderr)")
	id := fs.String("merchant-id", "m_shop", "the merchant's id")
	urls := providerURLs{}
	fs.Var(urls, "provider", "a provider's base URL as name=url (repeatable; default: a placeholder per provider)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *key == "" {
		var raw [24]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return fmt.Errorf("make an API key: %w", err)
		}
		*key = "sk_" + hex.EncodeToString(raw[:])
		fmt.Fprintf(notes, "merchant %s API key: %s (the file holds only its SHA-256)\n", *id, *key)
	}
	for _, name := range txswitch.DefaultProviderNames() {
		if urls[name] == "" {
			urls[name] = "https://" + strings.ReplaceAll(name, "_", "-") + ".example.invalid"
		}
	}
	cfg := txswitch.DefaultConfig([]txswitch.MerchantConfig{{ID: *id, Name: *id, APIKeyHashes: []string{txswitch.HashAPIKey(*key)}}}, urls)
	if e := cfg.Validate(); e != nil {
		return fmt.Errorf("%w: the example (at %s): %s", errInvalidConfig, e.Field, e.Message)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the example configuration: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func configCheck(w io.Writer, args []string) error {
	fs := newFlags("config check", "--file routing.json")
	file := fs.String("file", "", "the routing configuration (JSON)")
	if err := parse(fs, args); err != nil {
		return err
	}
	_, cfg, err := loadConfigFile(fs, *file)
	if err != nil {
		return err
	}
	// Amount limits and fixed fees over several currencies: PUT
	// /v1/admin/config refuses new ones (Validate, which apply shares with
	// earlier releases, does not); a file is checked whole.
	if e := cfg.CheckAmountCurrencies(); e != nil {
		return fmt.Errorf("%w: %s (at %s): %s", errInvalidConfig, *file, e.Field, e.Message)
	}
	enabled := 0
	for _, m := range cfg.Methods {
		if m.Enabled {
			enabled++
		}
	}
	_, err = fmt.Fprintf(w, "%s: valid: %d merchants, %d methods (%d enabled), %d providers, %d fraud rules\n",
		*file, len(cfg.Merchants), len(cfg.Methods), enabled, len(cfg.Providers), len(cfg.FraudRules))
	return err
}

func configMethods(w io.Writer, args []string) error {
	fs := newFlags("config methods", "(--file routing.json | --addr HOST:PORT) --country NL[,BE,...] --currency EUR --amount 49.98 [--channel online]")
	file := fs.String("file", "", "the routing configuration (JSON)")
	addr := fs.String("addr", "", "take the live configuration from this node instead")
	token := fs.String("admin-token", os.Getenv("TXSWITCH_ADMIN_TOKEN"), "admin API token, with --addr (env TXSWITCH_ADMIN_TOKEN)")
	countries := fs.String("country", "", "the shopper's country (ISO 3166-1 alpha-2), or several separated by commas")
	currency := fs.String("currency", "EUR", "the order's currency (ISO 4217)")
	amount := fs.String("amount", "", "the amount to pay, in major units (49.98)")
	channel := fs.String("channel", txswitch.ChannelOnline, "online, pos or moto")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*file == "") == (*addr == "") || *countries == "" || *amount == "" {
		fs.Usage()
		return errUsage
	}
	money, err := txswitch.ParseMajorAmount(*amount, *currency)
	if err != nil {
		return err
	}
	if money.Value <= 0 {
		return fmt.Errorf("amount must be positive, got %s", *amount)
	}
	if !txswitch.ValidChannel(*channel) {
		return fmt.Errorf("channel %q is not one of online, pos, moto", *channel)
	}
	var ccs []string
	for _, c := range strings.Split(*countries, ",") {
		c = strings.ToUpper(strings.TrimSpace(c))
		if !txswitch.ValidCountry(c) {
			return fmt.Errorf("country %q is not an ISO 3166-1 alpha-2 code", c)
		}
		ccs = append(ccs, c)
	}

	var b []byte
	source := *file
	if *file != "" {
		b, err = readConfigFile(*file)
	} else {
		source = "the configuration of " + *addr
		b, err = adminCall(http.MethodGet, *addr, "/v1/admin/config", *token, nil)
	}
	if err != nil {
		return err
	}
	cfg, err := decodeConfig(b, source)
	if err != nil {
		return err
	}
	printMethods(w, &cfg, ccs, money, *channel)
	return nil
}

// printMethods writes, for each country, what EligibleMethods answers for
// an order of amount in channel, every provider taken as up.
func printMethods(w io.Writer, cfg *txswitch.RoutingConfig, countries []string, amount txswitch.Money, channel string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, country := range countries {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		oc := txswitch.OrderContext{Country: country, Currency: amount.Currency, Amount: amount.Value, Channel: channel}
		resp := txswitch.EligibleMethods(cfg, oc, nil)
		fmt.Fprintf(tw, "%s, %s, %s: %d offered\n", country, txswitch.FormatMoney(amount), channel, len(resp.Methods))
		for _, m := range resp.Methods {
			fee := "no surcharge"
			if m.Surcharge.Value > 0 {
				fee = "surcharge " + txswitch.FormatMoney(m.Surcharge)
			}
			fmt.Fprintf(tw, "  offered\t%s\t%s\tvia %s\n", m.Method, fee, strings.Join(m.Providers, ", "))
		}
		for _, e := range resp.Excluded {
			fmt.Fprintf(tw, "  not offered\t%s\t%s\t%s\n", e.Method, e.Reason, e.Detail)
		}
	}
	_ = tw.Flush()
}

func configGet(w io.Writer, args []string) error {
	fs := newFlags("config get", "--addr HOST:PORT [--admin-token T]")
	addr := fs.String("addr", "127.0.0.1:8100", "API address of any node")
	token := fs.String("admin-token", os.Getenv("TXSWITCH_ADMIN_TOKEN"), "admin API token (env TXSWITCH_ADMIN_TOKEN)")
	if err := parse(fs, args); err != nil {
		return err
	}
	b, err := adminCall(http.MethodGet, *addr, "/v1/admin/config", *token, nil)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("the configuration from %s is not JSON: %w", *addr, err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

func configPut(w io.Writer, args []string) error {
	fs := newFlags("config put", "--addr HOST:PORT [--admin-token T] --file routing.json")
	addr := fs.String("addr", "127.0.0.1:8100", "API address of any node")
	token := fs.String("admin-token", os.Getenv("TXSWITCH_ADMIN_TOKEN"), "admin API token (env TXSWITCH_ADMIN_TOKEN)")
	file := fs.String("file", "", "the routing configuration (JSON)")
	if err := parse(fs, args); err != nil {
		return err
	}
	// Checked here first: a mistake is reported with the file's name, and
	// nothing is sent that the cluster would refuse anyway.
	b, _, err := loadConfigFile(fs, *file)
	if err != nil {
		return err
	}
	resp, err := adminCall(http.MethodPut, *addr, "/v1/admin/config", *token, b)
	if err != nil {
		return err
	}
	var now txswitch.RoutingConfig
	if err := json.Unmarshal(resp, &now); err != nil {
		return fmt.Errorf("the answer of %s is not a configuration: %w", *addr, err)
	}
	_, err = fmt.Fprintf(w, "configuration version %d is live\n", now.Version)
	return err
}

// adminCall sends one admin API request and returns the 200 answer's
// body (at most maxAdminAnswer bytes); any other status is an error
// quoting the body (the error format says what was refused and where).
func adminCall(method, addr, path, token string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %d: %s", addr, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return b, nil
}
