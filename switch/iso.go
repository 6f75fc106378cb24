package txswitch

import "slices"

// ISO reference data, held in code rather than read from a library: the
// minor-unit exponent is part of the wire contract with the providers (an
// amount of 1250 means 12.50 EUR but 1.250 KWD and 1250 JPY), and providers
// follow ISO 4217. CLDR-based tables (golang.org/x/text/currency) differ from
// ISO 4217 for several currencies (CLDR gives IQD, LBP, RSD... 0 digits where
// ISO gives 3 or 2), so a CLDR table would silently move money by powers of
// ten. The tables are small, reviewable, and change a few times a year.

// currencyExponents maps each active ISO 4217 currency (List One, 2025
// edition, withdrawn codes removed) to its minor-unit exponent. Codes whose
// minor unit is "N.A." (precious metals, XDR, XSU, XUA, test codes) are left
// out: nobody pays in them.
var currencyExponents = map[string]int{
	"AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2,
	"AWG": 2, "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2,
	// BGN: Bulgaria joined the euro area on 2026-01-01; the lev stays known
	// so stored orders and late refunds in BGN remain readable.
	"BGN": 2,
	"BHD": 3, "BIF": 0, "BMD": 2, "BND": 2, "BOB": 2, "BOV": 2, "BRL": 2,
	"BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2, "CAD": 2, "CDF": 2,
	"CHE": 2, "CHF": 2, "CHW": 2, "CLF": 4, "CLP": 0, "CNY": 2, "COP": 2,
	"COU": 2, "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2, "DJF": 0, "DKK": 2,
	"DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2, "ETB": 2, "EUR": 2, "FJD": 2,
	"FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2, "GNF": 0,
	"GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2,
	"ILS": 2, "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3,
	"JPY": 0, "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0,
	"KWD": 3, "KYD": 2, "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2,
	"LSL": 2, "LYD": 3, "MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2,
	"MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2, "MVR": 2, "MWK": 2, "MXN": 2,
	"MXV": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2,
	"NPR": 2, "NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2,
	"PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2,
	"RWF": 0, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2,
	"SHP": 2, "SLE": 2, "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2,
	"SYP": 2, "SZL": 2, "THB": 2, "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2,
	"TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2, "UAH": 2, "UGX": 0, "USD": 2,
	"USN": 2, "UYI": 0, "UYU": 2, "UYW": 4, "UZS": 2, "VED": 2, "VES": 2,
	"VND": 0, "VUV": 0, "WST": 2, "XAF": 0, "XCD": 2, "XCG": 2, "XOF": 0,
	"XPF": 0, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
}

// CurrencyExponent returns the number of minor-unit digits of an ISO 4217
// currency code (2 for EUR, 0 for JPY, 3 for KWD) and whether the code is a
// known active currency. Codes are upper case; "eur" is unknown, so that a
// stored amount has exactly one spelling.
func CurrencyExponent(code string) (int, bool) {
	e, ok := currencyExponents[code]
	return e, ok
}

// KnownCurrencies returns every currency CurrencyExponent knows, sorted, in
// a fresh slice (for documentation and OpenAPI enums).
func KnownCurrencies() []string {
	out := make([]string, 0, len(currencyExponents))
	for c := range currencyExponents {
		out = append(out, c)
	}
	slices.Sort(out) // map order must not leak
	return out
}

// countryCodes is the full ISO 3166-1 alpha-2 list of officially assigned
// codes (249). Exceptionally or transitionally reserved codes (EU, UK, XK...)
// are not countries a customer can be in for routing purposes, so they are
// rejected: a config or order saying "UK" is a mistake for "GB".
var countryCodes = func() map[string]struct{} {
	const all = "" +
		"AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ " +
		"BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ " +
		"CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ " +
		"DE DJ DK DM DO DZ " +
		"EC EE EG EH ER ES ET " +
		"FI FJ FK FM FO FR " +
		"GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY " +
		"HK HM HN HR HT HU " +
		"ID IE IL IM IN IO IQ IR IS IT " +
		"JE JM JO JP " +
		"KE KG KH KI KM KN KP KR KW KY KZ " +
		"LA LB LC LI LK LR LS LT LU LV LY " +
		"MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ " +
		"NA NC NE NF NG NI NL NO NP NR NU NZ " +
		"OM " +
		"PA PE PF PG PH PK PL PM PN PR PS PT PW PY " +
		"QA " +
		"RE RO RS RU RW " +
		"SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ " +
		"TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ " +
		"UA UG UM US UY UZ " +
		"VA VC VE VG VI VN VU " +
		"WF WS " +
		"YE YT " +
		"ZA ZM ZW"
	m := make(map[string]struct{}, 249)
	for i := 0; i+2 <= len(all); i += 3 {
		m[all[i:i+2]] = struct{}{}
	}
	return m
}()

// ValidCountry reports whether code is an officially assigned ISO 3166-1
// alpha-2 code, in upper case.
func ValidCountry(code string) bool {
	_, ok := countryCodes[code]
	return ok
}

// KnownCountries returns every code ValidCountry accepts, sorted, in a fresh
// slice.
func KnownCountries() []string {
	out := make([]string, 0, len(countryCodes))
	for c := range countryCodes {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// euroArea lists the member states using the euro (21 since Bulgaria joined
// on 2026-01-01). Microstates using the euro by agreement (AD, MC, SM, VA)
// are not euro-area members but are SEPA countries.
var euroArea = []string{
	"AT", "BE", "BG", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR",
	"IE", "IT", "LT", "LU", "LV", "MT", "NL", "PT", "SI", "SK",
}

// sepaCountries lists the countries and territories of the SEPA schemes
// that have their own ISO 3166 code: the EU 27, the EEA (IS, LI, NO),
// CH, GB, the microstates (AD, MC, SM, VA) and the Crown Dependencies
// (GG, IM, JE). Countries admitted later (the Western Balkans and Moldova
// are joining) are added by configuration, not by changing this list.
var sepaCountries = []string{
	"AD", "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES",
	"FI", "FR", "GB", "GG", "GR", "HR", "HU", "IE", "IM", "IS", "IT",
	"JE", "LI", "LT", "LU", "LV", "MC", "MT", "NL", "NO", "PL", "PT",
	"RO", "SE", "SI", "SK", "SM", "VA",
}

// EuroArea returns the ISO 3166 codes of the euro-area member states, sorted,
// in a fresh slice (callers may modify it; the package's copy stays intact).
func EuroArea() []string { return slices.Clone(euroArea) }

// SEPACountries returns the ISO 3166 codes of the SEPA countries, sorted, in
// a fresh slice.
func SEPACountries() []string { return slices.Clone(sepaCountries) }
