package e2e

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/remora-mesh/remora/accesslog"
	mixerserver "github.com/remora-mesh/remora/mixer/server"
	proxyconfig "github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filters/extauthz"
	"github.com/remora-mesh/remora/proxy/filters/headermutation"
	mixerfilter "github.com/remora-mesh/remora/proxy/filters/mixer"
)

// TestEveryConfigFieldIsDocumented walks the YAML configurations users
// write (the proxy bootstrap, the mixer server, access-log sinks and the
// filters' configs) and fails for each field whose name appears in no
// docs/*.md as code (`name`, `a.name`, or a `name:` key in a YAML block).
// It is a floor, not proof: it cannot tell a field explained from one
// merely shown.
func TestEveryConfigFieldIsDocumented(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs: %v", err)
	}
	var docs strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs.Write(b)
	}
	code := codeSpans(docs.String())
	paths := map[string]string{} // field path -> yaml name
	for _, v := range []any{
		proxyconfig.Bootstrap{}, mixerserver.Config{},
		accesslog.Config{}, accesslog.FileConfig{}, accesslog.GRPCConfig{},
		mixerfilter.Config{}, mixerfilter.ServiceConfig{}, extauthz.Config{}, extauthz.PerRoute{}, headermutation.Config{},
	} {
		t := reflect.TypeOf(v)
		yamlFields(t, t.String(), map[reflect.Type]bool{}, paths)
	}
	var missing []string
	for p, name := range paths {
		word := regexp.MustCompile(`(^|[^A-Za-z0-9_])` + regexp.QuoteMeta(name) + `($|[^A-Za-z0-9_])`)
		if !slices.ContainsFunc(code, word.MatchString) {
			missing = append(missing, p)
		}
	}
	slices.Sort(missing)
	for _, p := range missing {
		t.Errorf("%s: not documented in docs/*.md", p)
	}
}

// codeSpans returns the inline code spans and the fenced code blocks of
// Markdown text.
func codeSpans(md string) []string {
	out := regexp.MustCompile("(?s)```.*?```").FindAllString(md, -1)
	prose := regexp.MustCompile("(?s)```.*?```").ReplaceAllString(md, "")
	return append(out, regexp.MustCompile("(?s)`[^`]+`").FindAllString(prose, -1)...)
}

// yamlFields records the path and YAML name of every field of t, following
// yaml.v3's tag rules, through pointers, slices and maps.
func yamlFields(t reflect.Type, path string, seen map[reflect.Type]bool, out map[string]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] || t.PkgPath() == "time" || strings.HasPrefix(t.PkgPath(), "gopkg.in/") {
		return
	}
	seen[t] = true
	defer delete(seen, t)
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			yamlFields(f.Type, path, seen, out)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[path+"."+name] = name
		yamlFields(f.Type, path+"."+name, seen, out)
	}
}
