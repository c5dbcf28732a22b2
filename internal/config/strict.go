package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// DecodeStrict decodes node into out (a non-nil pointer) like yaml.v3
// does, but rejects unknown and duplicate fields and prefixes every error
// with the field path of the offending node below node
// ("listeners[0].filter_chains[1].bogus: unknown field"). It reports every
// problem it finds, joined with errors.Join. A nil node leaves out
// unchanged. It runs once per configuration load, so reflection is fine.
// Types implementing yaml.Unmarshaler decode themselves; they use
// DecodeStrict for their own parts to stay as strict.
func DecodeStrict(node *yaml.Node, out any) error { return DecodeStrictAt(node, out, "") }

// DecodeStrictAt is DecodeStrict for a node found at path, which prefixes
// every error: an UnmarshalYAML decoding part of its node later uses it
// to keep the paths of that part's errors.
func DecodeStrictAt(node *yaml.Node, out any, path string) error {
	if node == nil {
		return nil
	}
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return errors.New("config: decode target must be a non-nil pointer")
	}
	var errs []error
	decodeValue(node, v.Elem(), path, &errs)
	return errors.Join(errs...)
}

// UnmarshalStrict parses data as one YAML document and decodes it with
// DecodeStrict. An empty document leaves out unchanged.
func UnmarshalStrict(data []byte, out any) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("%s", YAMLError(err))
	}
	if root.Kind == 0 {
		return nil
	}
	return DecodeStrict(&root, out)
}

var (
	yamlNodeType    = reflect.TypeOf(yaml.Node{})
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
)

func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func pathOrRoot(path string) string {
	if path == "" {
		return "(root)"
	}
	return path
}

func addErr(errs *[]error, path, format string, args ...any) {
	*errs = append(*errs, fmt.Errorf("%s: %s", pathOrRoot(path), fmt.Sprintf(format, args...)))
}

// YAMLError strips yaml.v3's "yaml: unmarshal errors:" wrapping so the
// message reads well after a field path.
func YAMLError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n")
	s = strings.TrimSpace(s)
	return s
}

func decodeValue(node *yaml.Node, v reflect.Value, path string, errs *[]error) {
	if node.Kind == yaml.DocumentNode {
		if len(node.Content) == 0 {
			return
		}
		node = node.Content[0]
	}
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	// A null leaves the zero value in place.
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		return
	}
	t := v.Type()
	if t == yamlNodeType {
		v.Set(reflect.ValueOf(*node))
		return
	}
	if t.Kind() == reflect.Pointer {
		if t.Elem() == yamlNodeType {
			n := *node
			v.Set(reflect.ValueOf(&n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		decodeValue(node, v.Elem(), path, errs)
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		if err := node.Decode(v.Addr().Interface()); err != nil {
			addErr(errs, path, "%s", YAMLError(err))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			addErr(errs, path, "line %d: expected a mapping, got %s", node.Line, kindName(node))
			return
		}
		fields := structFields(t)
		seen := make(map[string]bool, len(node.Content)/2)
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, val := node.Content[i], node.Content[i+1]
			name := k.Value
			fp := joinPath(path, name)
			if seen[name] {
				addErr(errs, fp, "line %d: duplicate field", k.Line)
				continue
			}
			seen[name] = true
			idx, ok := fields[name]
			if !ok {
				addErr(errs, fp, "line %d: unknown field", k.Line)
				continue
			}
			decodeValue(val, v.FieldByIndex(idx), fp, errs)
		}
	case reflect.Slice:
		if node.Kind != yaml.SequenceNode {
			addErr(errs, path, "line %d: expected a list, got %s", node.Line, kindName(node))
			return
		}
		s := reflect.MakeSlice(t, len(node.Content), len(node.Content))
		for i, c := range node.Content {
			decodeValue(c, s.Index(i), path+"["+strconv.Itoa(i)+"]", errs)
		}
		v.Set(s)
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			addErr(errs, path, "line %d: expected a mapping, got %s", node.Line, kindName(node))
			return
		}
		if t.Key().Kind() != reflect.String {
			if err := node.Decode(v.Addr().Interface()); err != nil {
				addErr(errs, path, "%s", YAMLError(err))
			}
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMapWithSize(t, len(node.Content)/2))
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, val := node.Content[i], node.Content[i+1]
			fp := joinPath(path, k.Value)
			if v.MapIndex(reflect.ValueOf(k.Value).Convert(t.Key())).IsValid() {
				addErr(errs, fp, "line %d: duplicate key", k.Line)
				continue
			}
			ev := reflect.New(t.Elem()).Elem()
			decodeValue(val, ev, fp, errs)
			v.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), ev)
		}
	case reflect.Interface:
		var x any
		if err := node.Decode(&x); err != nil {
			addErr(errs, path, "%s", YAMLError(err))
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		if node.Kind != yaml.ScalarNode {
			addErr(errs, path, "line %d: expected a %s, got %s", node.Line, t.Kind(), kindName(node))
			return
		}
		if err := node.Decode(v.Addr().Interface()); err != nil {
			addErr(errs, path, "line %d: invalid %s %q", node.Line, t.Kind(), node.Value)
		}
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	default:
		return "an unexpected node"
	}
}

// structFields maps yaml names to field indexes, following yaml.v3's tag
// rules (name, "-", ",inline").
func structFields(t reflect.Type) map[string][]int {
	m := make(map[string][]int, t.NumField())
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("yaml")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), prefix...), i)
			if strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct {
				walk(f.Type, idx)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			m[name] = idx
		}
	}
	walk(t, nil)
	return m
}
