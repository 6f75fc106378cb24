package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Strict decoding.
//
// encoding/json alone is not strict enough for a payment API: it matches
// keys case-insensitively, lets duplicate keys overwrite each other, accepts
// null for a struct, and reports unknown fields without their path. So a
// body is first scanned against a shape derived once from the Go request
// type (exact-case keys, no duplicates, integer ranges, the full field path
// of the first problem, exactly one JSON object), and only then decoded
// with encoding/json, which also re-checks the syntax and at that point
// cannot fail on anything the scan accepted. The scan works on the bytes
// directly (json.Decoder.Token boxes every token and made strict decoding
// five times slower than the decode itself) and builds field paths only
// when it reports an error.

// shapeKind is the JSON kind a Go type accepts.
type shapeKind uint8

const (
	kindAny shapeKind = iota // any JSON value (interface{}, json.RawMessage, custom unmarshalers)
	kindObject
	kindMap
	kindArray
	kindString
	kindBool
	kindInt
	kindUint
	kindFloat
)

// shape is the JSON structure a Go type accepts.
type shape struct {
	kind     shapeKind
	nullable bool // pointers, slices, maps and interfaces accept null
	bits     int  // integer and float width
	fields   map[string]*shape
	elem     *shape
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	shapeCache          sync.Map // reflect.Type → *shape
)

// shapeOf returns the (cached) shape of t.
func shapeOf(t reflect.Type) *shape {
	if s, ok := shapeCache.Load(t); ok {
		return s.(*shape)
	}
	s := buildShape(t, map[reflect.Type]*shape{})
	shapeCache.Store(t, s)
	return s
}

func buildShape(t reflect.Type, seen map[reflect.Type]*shape) *shape {
	if s, ok := seen[t]; ok {
		return s // recursive type: share the node
	}
	nullable := false
	for t.Kind() == reflect.Pointer {
		nullable = true
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		// The type parses itself (json.RawMessage, time.Time): any value,
		// and encoding/json reports its errors.
		return &shape{kind: kindAny, nullable: true}
	}
	s := &shape{nullable: nullable}
	seen[t] = s
	switch t.Kind() {
	case reflect.Struct:
		s.kind = kindObject
		s.fields = map[string]*shape{}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := jsonName(f)
			if name == "-" {
				continue
			}
			s.fields[name] = buildShape(f.Type, seen)
		}
	case reflect.Map:
		s.kind, s.nullable = kindMap, true
		s.elem = buildShape(t.Elem(), seen)
	case reflect.Slice, reflect.Array:
		s.kind, s.nullable = kindArray, t.Kind() == reflect.Slice || nullable
		s.elem = buildShape(t.Elem(), seen)
	case reflect.String:
		s.kind = kindString
	case reflect.Bool:
		s.kind = kindBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		s.kind, s.bits = kindInt, t.Bits()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		s.kind, s.bits = kindUint, t.Bits()
	case reflect.Float32, reflect.Float64:
		s.kind, s.bits = kindFloat, t.Bits()
	default:
		s.kind, s.nullable = kindAny, true
	}
	return s
}

// jsonName is the JSON key of a struct field.
func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if tag == "-" {
		return "-"
	}
	if name == "" {
		return f.Name
	}
	return name
}

// describe names what a shape accepts, for error messages.
func (s *shape) describe() string {
	switch s.kind {
	case kindObject, kindMap:
		return "an object"
	case kindArray:
		return "an array"
	case kindString:
		return "a string"
	case kindBool:
		return "a boolean"
	case kindInt:
		return fmt.Sprintf("an integer (%d-bit)", s.bits)
	case kindUint:
		return fmt.Sprintf("a non-negative integer (%d-bit)", s.bits)
	case kindFloat:
		return "a number"
	}
	return "a JSON value"
}

// decodeStrict decodes body, which must be exactly one JSON object matching
// v's type, into v (a pointer). Errors are *txswitch.Error with status 400.
func decodeStrict(body []byte, v any) error { return decodeStrictWith(body, v, false) }

// decodeStrictWith is decodeStrict; allowNUL accepts \u0000 in strings.
func decodeStrictWith(body []byte, v any, allowNUL bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return txswitch.NewError(txswitch.KindInvalid, "missing_body", "", "a JSON request body is required")
	}
	if !utf8.Valid(body) {
		// encoding/json would silently replace the bad bytes with U+FFFD,
		// changing what the caller sent.
		return txswitch.NewError(txswitch.KindInvalid, "invalid_json", "", "the request body is not valid UTF-8")
	}
	if b := bytes.TrimLeft(body, " \t\r\n"); b[0] != '{' {
		return txswitch.NewError(txswitch.KindInvalid, "invalid_json", "", "the request body must be a JSON object")
	}
	sc := scanner{b: body, allowNUL: allowNUL}
	if err := sc.value(shapeOf(reflect.TypeOf(v).Elem()), nil, 0); err != nil {
		return err
	}
	if sc.ws(); sc.i < len(sc.b) {
		return txswitch.NewError(txswitch.KindInvalid, "invalid_json", "",
			fmt.Sprintf("unexpected data after the JSON object at byte %d", sc.i))
	}
	// The scan accepted the document, so this decode only fails for values
	// a custom unmarshaler rejects (e.g. a malformed time).
	d2 := json.NewDecoder(bytes.NewReader(body))
	d2.DisallowUnknownFields()
	if err := d2.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return txswitch.NewError(txswitch.KindInvalid, "invalid_field", te.Field,
				fmt.Sprintf("%s: cannot use JSON %s as %s", te.Field, te.Value, te.Type))
		}
		return txswitch.NewError(txswitch.KindInvalid, "invalid_field", "", "invalid value: "+err.Error())
	}
	return nil
}

// maxDepth bounds the nesting the scanner follows (encoding/json stops at
// 10000); request types nest a few levels, free-form values are bounded
// here so that recursion stays shallow.
const maxDepth = 64

// pathElem is one step of a field path, kept on the stack and rendered
// only for an error message.
type pathElem struct {
	parent *pathElem
	key    []byte // object key, or nil for an array index
	index  int
}

func (p *pathElem) String() string {
	if p == nil {
		return ""
	}
	parent := p.parent.String()
	if p.key == nil {
		return parent + "[" + strconv.Itoa(p.index) + "]"
	}
	if parent == "" {
		return string(p.key)
	}
	return parent + "." + string(p.key)
}

// scanner checks a JSON document against a shape, byte by byte.
type scanner struct {
	b        []byte
	i        int
	allowNUL bool // accept \u0000 in strings (see decodeStrictWith)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) syntax(what string) error {
	if s.i >= len(s.b) {
		return txswitch.NewError(txswitch.KindInvalid, "invalid_json", "", "the JSON body ends unexpectedly")
	}
	return txswitch.NewError(txswitch.KindInvalid, "invalid_json", "",
		fmt.Sprintf("malformed JSON at byte %d: %s", s.i, what))
}

func fieldErr(p *pathElem, sh *shape) error {
	path := p.String()
	return txswitch.NewError(txswitch.KindInvalid, "invalid_field", path,
		fmt.Sprintf("%s must be %s", displayPath(path), sh.describe()))
}

func displayPath(path string) string {
	if path == "" {
		return "the body"
	}
	return path
}

// value checks the next JSON value against sh.
func (s *scanner) value(sh *shape, p *pathElem, depth int) error {
	if depth > maxDepth {
		return s.syntax("nested too deeply")
	}
	s.ws()
	if s.i >= len(s.b) {
		return s.syntax("")
	}
	switch c := s.b[s.i]; {
	case c == 'n':
		if err := s.literal("null"); err != nil {
			return err
		}
		if !sh.nullable {
			return fieldErr(p, sh)
		}
		return nil
	case c == '{':
		if sh.kind != kindObject && sh.kind != kindMap && sh.kind != kindAny {
			return fieldErr(p, sh)
		}
		return s.object(sh, p, depth)
	case c == '[':
		if sh.kind != kindArray && sh.kind != kindAny {
			return fieldErr(p, sh)
		}
		elem := sh.elem
		if sh.kind == kindAny {
			elem = sh
		}
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return nil
		}
		for n := 0; ; n++ {
			if err := s.value(elem, &pathElem{parent: p, index: n}, depth+1); err != nil {
				return err
			}
			s.ws()
			if s.i >= len(s.b) {
				return s.syntax("")
			}
			switch s.b[s.i] {
			case ',':
				s.i++
			case ']':
				s.i++
				return nil
			default:
				return s.syntax("expected , or ]")
			}
		}
	case c == '"':
		if _, _, err := s.str(); err != nil {
			return err
		}
		if sh.kind != kindString && sh.kind != kindAny {
			return fieldErr(p, sh)
		}
		return nil
	case c == 't' || c == 'f':
		lit := "true"
		if c == 'f' {
			lit = "false"
		}
		if err := s.literal(lit); err != nil {
			return err
		}
		if sh.kind != kindBool && sh.kind != kindAny {
			return fieldErr(p, sh)
		}
		return nil
	case c == '-' || c >= '0' && c <= '9':
		num, err := s.number()
		if err != nil {
			return err
		}
		switch sh.kind {
		case kindAny:
		case kindInt:
			_, err = strconv.ParseInt(string(num), 10, sh.bits)
		case kindUint:
			_, err = strconv.ParseUint(string(num), 10, sh.bits)
		case kindFloat:
			_, err = strconv.ParseFloat(string(num), sh.bits)
		default:
			err = errors.New("not a number")
		}
		if err != nil {
			return fieldErr(p, sh)
		}
		return nil
	}
	return s.syntax(fmt.Sprintf("unexpected character %q", s.b[s.i]))
}

// object checks an object; s.b[s.i] is '{'.
func (s *scanner) object(sh *shape, p *pathElem, depth int) error {
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	// Keys seen so far: a few on the stack, a map past that.
	var few [16][]byte
	seen := few[:0]
	var many map[string]struct{}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return s.syntax("expected a string key")
		}
		key, escaped, err := s.str()
		if err != nil {
			return err
		}
		if escaped {
			var k string
			if err := json.Unmarshal(key, &k); err != nil {
				return s.syntax("bad string escape")
			}
			key = []byte(k)
		} else {
			key = key[1 : len(key)-1]
		}
		here := &pathElem{parent: p, key: key}
		dup := false
		if many != nil {
			_, dup = many[string(key)]
			many[string(key)] = struct{}{}
		} else {
			for _, k := range seen {
				if bytes.Equal(k, key) {
					dup = true
				}
			}
			if seen = append(seen, key); len(seen) == len(few) {
				many = make(map[string]struct{}, 2*len(few))
				for _, k := range seen {
					many[string(k)] = struct{}{}
				}
			}
		}
		if dup {
			path := here.String()
			return txswitch.NewError(txswitch.KindInvalid, "duplicate_field", path, path+" appears more than once")
		}
		fs := sh
		switch sh.kind {
		case kindObject:
			var ok bool
			if fs, ok = sh.fields[string(key)]; !ok {
				path := here.String()
				return txswitch.NewError(txswitch.KindInvalid, "unknown_field", path, "unknown field "+path)
			}
		case kindMap:
			fs = sh.elem
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.syntax("expected :")
		}
		s.i++
		if err := s.value(fs, here, depth+1); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.syntax("")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.syntax("expected , or }")
		}
	}
}

// str scans a string starting at s.b[s.i] == '"' and returns it with its
// quotes, and whether it holds escapes.
func (s *scanner) str() (raw []byte, escaped bool, err error) {
	start := s.i
	s.i++
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start:s.i], escaped, nil
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				s.i = len(s.b)
				return nil, false, s.syntax("")
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					s.i = len(s.b)
					return nil, false, s.syntax("")
				}
				if !isHex4(s.b[s.i+2 : s.i+6]) {
					return nil, false, s.syntax("bad \\u escape")
				}
				if !s.allowNUL && string(s.b[s.i+2:s.i+6]) == "0000" {
					// The NUL character, which no field has a use for and
					// the central database cannot store.
					return nil, false, s.syntax("NUL character (\\u0000) in string")
				}
				// A surrogate escape stands for half a character: only a
				// high one followed by a low one is one. Go's decoder would
				// turn a lone half into U+FFFD, storing a character the
				// client did not send, which raw invalid UTF-8 is refused
				// for.
				switch u := hex4(s.b[s.i+2 : s.i+6]); {
				case u >= 0xDC00 && u <= 0xDFFF:
					return nil, false, s.syntax("unpaired surrogate in \\u escape")
				case u >= 0xD800 && u <= 0xDBFF:
					next := s.b[s.i+6:]
					if len(next) < 6 || next[0] != '\\' || next[1] != 'u' || !isHex4(next[2:6]) {
						return nil, false, s.syntax("unpaired surrogate in \\u escape")
					}
					if lo := hex4(next[2:6]); lo < 0xDC00 || lo > 0xDFFF {
						return nil, false, s.syntax("unpaired surrogate in \\u escape")
					}
					s.i += 6
				}
				s.i += 6
			default:
				return nil, false, s.syntax("bad string escape")
			}
		case c < 0x20:
			return nil, false, s.syntax("control character in string")
		default:
			s.i++
		}
	}
	return nil, false, s.syntax("")
}

// isHex4 reports whether b is four hex digits.
func isHex4(b []byte) bool {
	for _, h := range b {
		if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
			return false
		}
	}
	return len(b) == 4
}

// hex4 is the value of four hex digits (checked by the caller).
func hex4(b []byte) rune {
	var r rune
	for _, h := range b {
		r <<= 4
		switch {
		case h >= '0' && h <= '9':
			r |= rune(h - '0')
		case h >= 'a' && h <= 'f':
			r |= rune(h - 'a' + 10)
		default:
			r |= rune(h - 'A' + 10)
		}
	}
	return r
}

// number scans a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() ([]byte, error) {
	start := s.i
	if s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return nil, s.syntax("bad number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return nil, s.syntax("bad number")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return nil, s.syntax("bad number")
		}
	}
	return s.b[start:s.i], nil
}

// literal scans true, false or null.
func (s *scanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.syntax("bad literal")
	}
	s.i += len(lit)
	return nil
}
