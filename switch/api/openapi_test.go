package api

import (
	"encoding"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	txswitch "github.com/txswitch/txswitch/switch"
)

const openAPIPath = "../../docs/openapi.yaml"

// openAPIDoc is the part of an OpenAPI 3 document the drift test reads.
type openAPIDoc struct {
	OpenAPI    string                           `yaml:"openapi"`
	Paths      map[string]map[string]*operation `yaml:"paths"`
	Components struct {
		Schemas map[string]*schema `yaml:"schemas"`
	} `yaml:"components"`
}

type operation struct {
	RequestBody *struct {
		Content map[string]struct {
			Schema *schema `yaml:"schema"`
		} `yaml:"content"`
	} `yaml:"requestBody"`
	Responses map[string]any `yaml:"responses"`
}

type schema struct {
	Ref                  string             `yaml:"$ref"`
	Type                 string             `yaml:"type"`
	Properties           map[string]*schema `yaml:"properties"`
	Items                *schema            `yaml:"items"`
	AllOf                []*schema          `yaml:"allOf"`
	AdditionalProperties any                `yaml:"additionalProperties"`
}

func loadOpenAPI(t *testing.T) *openAPIDoc {
	t.Helper()
	b, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatalf("read %s: %v", openAPIPath, err)
	}
	var doc openAPIDoc
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parse %s: %v", openAPIPath, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0") {
		t.Fatalf("openapi version %q, want 3.0.x", doc.OpenAPI)
	}
	return &doc
}

// resolve follows $ref and single-element allOf wrappers.
func (d *openAPIDoc) resolve(t reporter, s *schema, path string) *schema {
	for s != nil {
		switch {
		case s.Ref != "":
			name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/")
			if !ok || d.Components.Schemas[name] == nil {
				t.Errorf("%s: unresolvable $ref %q", path, s.Ref)
				return nil
			}
			s = d.Components.Schemas[name]
		case len(s.AllOf) == 1:
			s = s.AllOf[0]
		default:
			return s
		}
	}
	t.Errorf("%s: no schema", path)
	return nil
}

// TestOpenAPIRoutesMatchServer: the document describes exactly the routes
// the server serves.
func TestOpenAPIRoutesMatchServer(t *testing.T) {
	doc := loadOpenAPI(t)
	var inDoc, inServer []string
	for p, ops := range doc.Paths {
		for m := range ops {
			switch m {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				inDoc = append(inDoc, strings.ToUpper(m)+" "+p)
			}
		}
	}
	for _, r := range routeTable() {
		inServer = append(inServer, r.method+" "+r.pattern)
	}
	sort.Strings(inDoc)
	sort.Strings(inServer)
	if !slices.Equal(inDoc, inServer) {
		t.Fatalf("routes differ\n document: %q\n server:   %q", inDoc, inServer)
	}
	for _, r := range routeTable() {
		op := doc.Paths[r.pattern][strings.ToLower(r.method)]
		if len(op.Responses) == 0 {
			t.Errorf("%s %s documents no responses", r.method, r.pattern)
		}
		if (op.RequestBody != nil) != (r.reqType != nil) {
			t.Errorf("%s %s: document has request body %v, server %v", r.method, r.pattern, op.RequestBody != nil, r.reqType)
		}
	}
}

// TestOpenAPIRequestSchemasMatchGoTypes: every request schema has exactly
// the JSON fields of the Go type the server decodes, recursively.
func TestOpenAPIRequestSchemasMatchGoTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	for _, r := range routeTable() {
		if r.reqType == nil {
			continue
		}
		op := doc.Paths[r.pattern][strings.ToLower(r.method)]
		if op == nil || op.RequestBody == nil {
			t.Errorf("%s %s: no request body in the document", r.method, r.pattern)
			continue
		}
		c, ok := op.RequestBody.Content["application/json"]
		if !ok {
			t.Errorf("%s %s: request body is not application/json", r.method, r.pattern)
			continue
		}
		compareSchema(t, doc, c.Schema, r.reqType, r.method+" "+r.pattern)
	}
}

// TestOpenAPIResponseSchemasMatchGoTypes does the same for the resources.
func TestOpenAPIResponseSchemasMatchGoTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	for name, typ := range map[string]reflect.Type{
		"Order":                reflect.TypeFor[txswitch.Order](),
		"Payment":              reflect.TypeFor[txswitch.Payment](),
		"Refund":               reflect.TypeFor[txswitch.Refund](),
		"Capture":              reflect.TypeFor[txswitch.Capture](),
		"Cancellation":         reflect.TypeFor[txswitch.Cancellation](),
		"MethodsResponse":      reflect.TypeFor[txswitch.MethodsResponse](),
		"TimelineResponse":     reflect.TypeFor[txswitch.TimelineResponse](),
		"Explanation":          reflect.TypeFor[txswitch.Explanation](),
		"Error":                reflect.TypeFor[txswitch.Error](),
		"ErrorResponse":        reflect.TypeFor[errorBody](),
		"RoutingConfig":        reflect.TypeFor[txswitch.RoutingConfig](),
		"IntentsResponse":      reflect.TypeFor[txswitch.IntentsResponse](),
		"ReviewsResponse":      reflect.TypeFor[txswitch.ReviewsResponse](),
		"AddMemberResponse":    reflect.TypeFor[AddMemberResponse](),
		"RemoveMemberResponse": reflect.TypeFor[RemoveMemberResponse](),
	} {
		s := doc.Components.Schemas[name]
		if s == nil {
			t.Errorf("schema %s missing", name)
			continue
		}
		compareSchema(t, doc, s, typ, name)
	}
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// reporter is the part of testing.T the comparison uses, so that a test can
// check that the comparison reports drift.
type reporter interface {
	Errorf(format string, args ...any)
}

func compareSchema(t reporter, doc *openAPIDoc, s *schema, typ reflect.Type, path string) {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if s = doc.resolve(t, s, path); s == nil {
		return
	}
	if reflect.PointerTo(typ).Implements(jsonUnmarshaler) || reflect.PointerTo(typ).Implements(textUnmarshaler) {
		return // time.Time, json.RawMessage: documented by format
	}
	want := map[reflect.Kind]string{
		reflect.Struct: "object", reflect.Map: "object", reflect.Slice: "array", reflect.String: "string",
		reflect.Bool: "boolean", reflect.Float32: "number", reflect.Float64: "number",
	}[typ.Kind()]
	switch typ.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "integer"
	}
	if want != "" && s.Type != want && !(want == "object" && s.Type == "" && s.Properties != nil) {
		t.Errorf("%s: schema type %q, Go type %s wants %q", path, s.Type, typ, want)
		return
	}
	switch typ.Kind() {
	case reflect.Struct:
		fields := map[string]reflect.Type{}
		for i := range typ.NumField() {
			f := typ.Field(i)
			if name := jsonName(f); f.IsExported() && name != "-" {
				fields[name] = f.Type
			}
		}
		var inGo, inDoc []string
		for k := range fields {
			inGo = append(inGo, k)
		}
		for k := range s.Properties {
			inDoc = append(inDoc, k)
		}
		sort.Strings(inGo)
		sort.Strings(inDoc)
		if !slices.Equal(inGo, inDoc) {
			t.Errorf("%s: properties %q, Go type %s has %q", path, inDoc, typ, inGo)
			return
		}
		for k, ft := range fields {
			compareSchema(t, doc, s.Properties[k], ft, path+"."+k)
		}
	case reflect.Slice:
		if s.Items == nil {
			t.Errorf("%s: array without items", path)
			return
		}
		compareSchema(t, doc, s.Items, typ.Elem(), path+"[]")
	case reflect.Map:
		ap, ok := s.AdditionalProperties.(map[string]any)
		if !ok {
			t.Errorf("%s: map without additionalProperties schema", path)
			return
		}
		b, _ := yaml.Marshal(ap)
		var elem schema
		if err := yaml.Unmarshal(b, &elem); err != nil {
			t.Errorf("%s: %v", path, err)
			return
		}
		compareSchema(t, doc, &elem, typ.Elem(), path+"{}")
	}
}

// recorder collects reported problems.
type recorder struct{ errs []string }

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestOpenAPIDriftDetected makes sure the comparison can fail.
func TestOpenAPIDriftDetected(t *testing.T) {
	doc := loadOpenAPI(t)
	type renamed struct {
		Reference string `json:"reference"`
		Renamed   string `json:"renamed"`
	}
	type retyped struct {
		Value    string `json:"value"`
		Currency string `json:"currency"`
	}
	type nested struct {
		Amount retyped `json:"amount"`
	}
	for name, c := range map[string]struct {
		schema string
		typ    reflect.Type
	}{
		"renamed field":      {"CreateOrderRequest", reflect.TypeFor[renamed]()},
		"retyped field":      {"Money", reflect.TypeFor[retyped]()},
		"nested retyped":     {"CaptureRequest", reflect.TypeFor[nested]()},
		"slice for a struct": {"Money", reflect.TypeFor[[]string]()},
	} {
		var r recorder
		compareSchema(&r, doc, doc.Components.Schemas[c.schema], c.typ, name)
		if len(r.errs) == 0 {
			t.Errorf("%s: drift not reported", name)
		}
	}
	var r recorder
	compareSchema(&r, doc, doc.Components.Schemas["Money"], reflect.TypeFor[txswitch.Money](), "Money")
	if len(r.errs) != 0 {
		t.Errorf("false drift: %q", r.errs)
	}
}
