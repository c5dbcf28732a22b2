package format

import (
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/remora-mesh/remora/proxy/filter"
)

// object is a compiled JSON dictionary with its keys sorted.
type object struct {
	entries []entry
}

type entry struct {
	key  string  // `"key":`, escaped
	obj  *object // nested dictionary
	lit  string  // raw JSON for a non-string scalar in the config
	segs []segment
}

// CompileJSON compiles an Envoy json_format (typed false: every value is a
// string) or typed_json_format (typed true) dictionary. Values are format
// strings, nested dictionaries (map[string]any, as YAML decodes them), or
// number/boolean/null literals that are copied to the output.
func CompileJSON(dict map[string]any, typed bool, opts Options) (*Formatter, error) {
	if len(dict) == 0 {
		return nil, &Error{Msg: "json format must have at least one key"}
	}
	obj, err := compileObject(dict, "", typed)
	if err != nil {
		return nil, err
	}
	return &Formatter{json: obj, typed: typed, omit: opts.OmitEmptyValues}, nil
}

func compileObject(dict map[string]any, path string, typed bool) (*object, error) {
	keys := make([]string, 0, len(dict))
	for k := range dict {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	obj := &object{entries: make([]entry, 0, len(keys))}
	for _, k := range keys {
		kp := k
		if path != "" {
			kp = path + "." + k
		}
		e := entry{key: `"` + string(appendEscaped(nil, k)) + `":`}
		switch v := dict[k].(type) {
		case string:
			segs, err := parse(v)
			if err != nil {
				fe := err.(*Error)
				fe.Key = kp
				return nil, fe
			}
			e.segs = segs
		case map[string]any:
			sub, err := compileObject(v, kp, typed)
			if err != nil {
				return nil, err
			}
			e.obj = sub
		case nil:
			e.lit = "null"
		case bool:
			e.lit = strconv.FormatBool(v)
		case int:
			e.lit = strconv.Itoa(v)
		case int64:
			e.lit = strconv.FormatInt(v, 10)
		case uint64:
			e.lit = strconv.FormatUint(v, 10)
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, &Error{Key: kp, Msg: "number must be finite"}
			}
			e.lit = strconv.FormatFloat(v, 'g', -1, 64)
		default:
			return nil, &Error{Key: kp, Msg: fmt.Sprintf("value must be a format string, a nested dictionary or a scalar, not %T", v)}
		}
		if e.lit != "" && !typed {
			e.lit = `"` + e.lit + `"`
		}
		obj.entries = append(obj.entries, e)
	}
	return obj, nil
}

func (f *Formatter) appendObject(dst []byte, obj *object, info *filter.StreamInfo, sc *scratch) []byte {
	dst = append(dst, '{')
	first := true
	for i := range obj.entries {
		e := &obj.entries[i]
		mark := len(dst)
		if !first {
			dst = append(dst, ',')
		}
		dst = append(dst, e.key...)
		switch {
		case e.obj != nil:
			dst = f.appendObject(dst, e.obj, info, sc)
		case e.lit != "":
			dst = append(dst, e.lit...)
		case len(e.segs) == 1 && e.segs[0].op != nil:
			v := e.segs[0].op.eval(info, sc)
			if f.omit && v.empty() {
				dst = dst[:mark]
				continue
			}
			if f.typed {
				dst = v.appendTyped(dst)
			} else {
				dst = append(dst, '"')
				dst = v.appendJSONStringBody(dst, f.omit)
				dst = append(dst, '"')
			}
		default:
			dst = append(dst, '"')
			start := len(dst)
			for j := range e.segs {
				s := &e.segs[j]
				if s.op == nil {
					dst = appendEscaped(dst, s.lit)
					continue
				}
				v := s.op.eval(info, sc)
				dst = v.appendJSONStringBody(dst, f.omit)
			}
			if f.omit && len(dst) == start {
				dst = dst[:mark]
				continue
			}
			dst = append(dst, '"')
		}
		first = false
	}
	return append(dst, '}')
}
