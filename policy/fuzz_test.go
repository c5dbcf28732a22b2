package policy

import (
	"os"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/remora-mesh/remora/attributes"
)

// FuzzLoadRego feeds arbitrary text through the loader's parse, compile
// and analysis steps: every input must give a module or an error, never a
// panic.
func FuzzLoadRego(f *testing.F) {
	f.Add(DefaultPolicy)
	f.Add(allowGET)
	f.Add("package envoy.authz\nallow { input.attributes.request.http.method == \"GET\" }\n")
	f.Add("package x\np if {\n")
	f.Add("package envoy.authz\nallow if count(input) > 0\nallow if time.now_ns() > 0\n")
	f.Add("package envoy.authz\nallow := x if { some k; x := input.mixer_attributes[k] } else := false\n")
	f.Add("package envoy.authz\nhttp_request := input.attributes.request.http\nallow if http_request.headers.authorization\n")
	f.Add("package envoy.authz\nallow if { h := input.attributes.request.http.headers; not h[\"x\"]; count(h) > 0 }\n")
	f.Add(readSeed(f, "testdata/rbac/policy.rego"))
	f.Add(readSeed(f, "testdata/v0/policy.rego"))
	f.Add("")
	q, _ := parseQuery(DefaultQuery)
	f.Fuzz(func(t *testing.T, src string) {
		l := &loaded{modules: map[string]*ast.Module{}, data: map[string]any{}}
		if err := l.addModule("fuzz.rego", src, RegoVersionAuto); err != nil {
			return
		}
		c := ast.NewCompiler()
		c.Compile(l.modules)
		if c.Failed() {
			if len(c.Errors) == 0 {
				t.Fatal("compile failed without errors")
			}
			return
		}
		a := analyze(c, q)
		if !a.cacheable && a.reason == "" {
			t.Fatal("not cacheable without a reason")
		}
		if a.cacheable && a.needs.mixerAll {
			t.Fatal("cacheable although it reads input whole")
		}
	})
}

func readSeed(f *testing.F, name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		f.Fatal(err)
	}
	return string(b)
}

// FuzzBuildInput builds input documents from arbitrary paths and bodies.
func FuzzBuildInput(f *testing.F) {
	f.Add("/api/v1/items?page=2&tag=a", `{"a":1}`, "application/json", "7")
	f.Add("/a%zz", "", "", "")
	f.Add("", `{"a":`, "application/json", "100")
	f.Add("//x//y?", "[1,2", "application/json", "x")
	f.Fuzz(func(t *testing.T, path, body, contentType, contentLength string) {
		bag := attributes.BagOf(map[string]attributes.Value{
			attributes.RequestPath: attributes.String(path),
			attributes.RequestBody: attributes.String(body),
			attributes.RequestHeaders: attributes.StringMapValue(attributes.StringMapOf(map[string]string{
				"content-type": contentType, "content-length": contentLength})),
		})
		v, err := BuildInput(bag)
		if err == nil && v == nil {
			t.Fatal("nil input without error")
		}
	})
}

// FuzzDecodeDecision interprets arbitrary JSON values as decisions.
func FuzzDecodeDecision(f *testing.F) {
	f.Add(`true`)
	f.Add(`{"allowed": true, "headers": {"a": ["b", "c"]}, "http_status": 200}`)
	f.Add(`{"allowed": false, "headers": [{"a": "b"}], "valid_duration": "1s", "valid_use_count": 3}`)
	f.Add(`{"allowed": true, "http_status": 1e400}`)
	f.Fuzz(func(t *testing.T, doc string) {
		var v any
		if err := util.UnmarshalJSON([]byte(doc), &v); err != nil {
			return
		}
		var d Decision
		if _, err := decodeDecision(v, &d); err == nil {
			_ = d.RouteDirective()
		}
	})
}
