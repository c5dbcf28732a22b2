package config

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestDecodeStrict(t *testing.T) {
	type inner struct {
		A int               `yaml:"a"`
		M map[string]string `yaml:"m,omitempty"`
		N *yaml.Node        `yaml:"n,omitempty"`
	}
	type outer struct {
		Name  string  `yaml:"name"`
		Items []inner `yaml:"items"`
		Ptr   *inner  `yaml:"ptr,omitempty"`
		Skip  string  `yaml:"-"`
	}
	tests := []struct {
		name, in, wantErr string
		check             func(*outer) bool
	}{
		{"ok", "name: x\nitems: [{a: 1, m: {k: v}, n: {free: [form]}}]", "", func(o *outer) bool {
			return o.Name == "x" && o.Items[0].A == 1 && o.Items[0].M["k"] == "v" && o.Items[0].N != nil
		}},
		{"alias", "base: &b {a: 7}\nname: y", "base: line 1: unknown field", nil},
		{"alias value", "name: y\nitems: [&i {a: 7}, *i]", "", func(o *outer) bool { return len(o.Items) == 2 && o.Items[1].A == 7 }},
		{"null keeps zero", "name: ~\nptr: null", "", func(o *outer) bool { return o.Name == "" && o.Ptr == nil }},
		{"duplicate field", "name: a\nname: b", "name: line 2: duplicate field", nil},
		{"duplicate key", "items: [{m: {k: 1, k: 2}}]", "items[0].m.k: line 1: duplicate key", nil},
		{"ignored field is unknown", "Skip: x", "Skip: line 1: unknown field", nil},
		{"type error", "items: [{a: x}]", `items[0].a: line 1: invalid int "x"`, nil},
		{"list expected", "items: {a: 1}", "items: line 1: expected a list, got a mapping", nil},
		{"mapping expected", "ptr: [1]", "ptr: line 1: expected a mapping, got a list", nil},
		{"scalar expected", "name: [x]", "name: line 1: expected a string, got a list", nil},
		{"several problems", "bogus: 1\nitems: [{a: x, b: 2}]", "bogus: line 1: unknown field\nitems[0].a: line 2: invalid int \"x\"\nitems[0].b: line 2: unknown field", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(tt.in), &n); err != nil {
				t.Fatal(err)
			}
			var o outer
			err := DecodeStrict(&n, &o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(&o) {
				t.Fatalf("decoded %+v", o)
			}
		})
	}
	if err := DecodeStrict(&yaml.Node{}, outer{}); err == nil {
		t.Fatal("non-pointer target accepted")
	}
}

// FuzzDecodeStrict checks that no document makes the strict decoder panic,
// whatever the target's shape.
func FuzzDecodeStrict(f *testing.F) {
	f.Add("name: x\nitems: [{a: 1, m: {k: v}}]\nptr: {a: 2}")
	f.Add("bogus: 1\nitems: [{a: x, b: 2}]")
	f.Add("base: &b {a: 1}\nptr: *b\nname: [1]")
	f.Add("d: 5s\nitems: {}")
	f.Fuzz(func(t *testing.T, in string) {
		type inner struct {
			A int               `yaml:"a"`
			M map[string]string `yaml:"m,omitempty"`
			D Duration          `yaml:"d,omitempty"`
			N *yaml.Node        `yaml:"n,omitempty"`
			X any               `yaml:"x,omitempty"`
		}
		var out struct {
			Name  string         `yaml:"name"`
			Items []inner        `yaml:"items"`
			Ptr   *inner         `yaml:"ptr,omitempty"`
			Map   map[int]string `yaml:"map,omitempty"`
			inner `yaml:",inline"`
		}
		_ = UnmarshalStrict([]byte(in), &out)
	})
}
