package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/remora-mesh/remora/attributes"
)

// analysis is what static analysis of a compiled policy found: which
// attributes its decision can depend on, whether its decisions may be
// cached at all, and which costly parts of the input it reads.
type analysis struct {
	cacheable bool
	// reason says why the policy is not cacheable.
	reason string
	// refs are the referenced attributes, sorted by name then key, with
	// keyed references dropped where the whole attribute is referenced.
	refs  []attrRef
	needs inputNeeds
}

// extraNondeterministic lists built-ins whose result depends on more than
// their arguments although OPA does not flag them: JWT and certificate
// verification compare against the current time.
var extraNondeterministic = map[string]bool{
	"io.jwt.decode_verify":                                   true,
	"crypto.x509.parse_and_verify_certificates":              true,
	"crypto.x509.parse_and_verify_certificates_with_options": true,
	"time.now_ns": true,
}

// analyze walks everything the query can evaluate — the rules under and
// above the queried path, every rule and function they reference,
// transitively — and collects the references into input. It errs on the
// safe side: what it cannot resolve statically makes the policy reference
// more or not be cacheable, never less.
func analyze(c *ast.Compiler, query ast.Ref) *analysis {
	w := &refWalker{
		c:     c,
		seen:  map[*ast.Rule]bool{},
		refs:  map[attrRef]bool{},
		mixer: map[string]bool{},
	}
	w.dataRef(query)
	a := &analysis{cacheable: w.reason == "", reason: w.reason}
	for r := range w.refs {
		if r.keyed && w.refs[attrRef{name: r.name}] {
			continue
		}
		a.refs = append(a.refs, r)
	}
	slices.SortFunc(a.refs, func(x, y attrRef) int {
		if c := strings.Compare(x.name, y.name); c != 0 {
			return c
		}
		if x.keyed != y.keyed {
			if !x.keyed {
				return -1
			}
			return 1
		}
		return strings.Compare(x.key, y.key)
	})
	switch {
	case w.wholeInput:
		a.needs = fullInput
	default:
		a.needs = inputNeeds{leaves: w.leaves, mixerAll: w.mixerAll}
		if len(w.mixer) > 0 {
			a.needs.mixer = w.mixer
		}
	}
	if !a.cacheable {
		a.refs = nil
	}
	return a
}

// references returns the analysis' references with their presence in bag.
func (a *analysis) references(bag attributes.Bag) []Reference {
	if len(a.refs) == 0 {
		return nil
	}
	out := make([]Reference, len(a.refs))
	for i, r := range a.refs {
		v, ok := bag.Get(r.name)
		if r.keyed {
			if ok && v.Kind() == attributes.KindStringMap {
				_, ok = v.StringMapValue().Get(r.key)
			} else {
				ok = false
			}
		}
		out[i] = Reference{Name: r.name, MapKey: r.key, Present: ok}
	}
	return out
}

type refWalker struct {
	c    *ast.Compiler
	seen map[*ast.Rule]bool
	refs map[attrRef]bool

	reason     string // first reason the policy is not cacheable
	wholeInput bool
	leaves     leafSet // input leaves read
	mixerAll   bool
	mixer      map[string]bool
}

func (w *refWalker) notCacheable(format string, args ...any) {
	if w.reason == "" {
		w.reason = fmt.Sprintf(format, args...)
	}
}

// dataRef walks every rule that can contribute to the document ref names:
// rules at each prefix of its constant part (they may produce it whole)
// and every rule below it.
func (w *refWalker) dataRef(ref ast.Ref) {
	node := w.c.RuleTree.Child(ref[0].Value)
	if node == nil {
		return
	}
	for _, t := range ref[1:] {
		if !t.IsGround() {
			break
		}
		child := node.Child(t.Value)
		if child == nil {
			return
		}
		node = child
		for _, r := range node.Values {
			w.rule(r)
		}
	}
	w.subtree(node, true)
}

func (w *refWalker) subtree(n *ast.TreeNode, skipSelf bool) {
	if !skipSelf {
		for _, r := range n.Values {
			w.rule(r)
		}
	}
	for _, child := range n.Children {
		w.subtree(child, false)
	}
}

func (w *refWalker) rule(r *ast.Rule) {
	for ; r != nil; r = r.Else {
		if w.seen[r] {
			return
		}
		w.seen[r] = true
		for _, t := range r.Head.Args {
			w.walk(t)
		}
		if r.Head.Key != nil {
			w.walk(r.Head.Key)
		}
		if r.Head.Value != nil {
			w.walk(r.Head.Value)
		}
		if len(r.Head.Reference) > 1 {
			for _, t := range r.Head.Reference[1:] {
				w.walk(t)
			}
		}
		w.walk(r.Body)
	}
}

// walk visits x and everything below it.
func (w *refWalker) walk(x any) {
	ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case *ast.Expr:
			if v.IsCall() {
				w.call(v.Operator())
			}
		case ast.Call:
			if len(v) > 0 {
				if op, ok := v[0].Value.(ast.Ref); ok {
					w.call(op)
				}
			}
		case ast.Ref:
			return w.ref(v)
		case ast.Var:
			if v.Equal(ast.InputRootDocument.Value) {
				w.input(nil)
			}
		}
		return false
	}).Walk(x)
}

// ref handles a reference into input or data and walks its dynamic parts;
// it reports whether the visitor should skip the reference's terms.
func (w *refWalker) ref(r ast.Ref) bool {
	switch {
	case r[0].Value.Compare(ast.InputRootDocument.Value) == 0:
		w.input(r[1:])
	case r[0].Value.Compare(ast.DefaultRootDocument.Value) == 0:
		w.dataRef(r)
	default:
		return false
	}
	for _, t := range r[1:] {
		if !t.IsGround() {
			w.walk(t)
		}
	}
	return true
}

// call checks the function a call expression invokes. User functions are
// walked through their data reference; built-ins must be deterministic.
func (w *refWalker) call(op ast.Ref) {
	if op[0].Value.Compare(ast.DefaultRootDocument.Value) == 0 {
		return // walked as a data reference
	}
	name := op.String()
	b, ok := ast.BuiltinMap[name]
	switch {
	case !ok:
		w.notCacheable("calls %s, which is not a known built-in", name)
	case b.Nondeterministic || extraNondeterministic[name]:
		w.notCacheable("calls the non-deterministic built-in %s", name)
	}
}

// input records a reference to input followed by terms.
func (w *refWalker) input(terms ast.Ref) {
	path := make([]string, 0, len(terms))
	for _, t := range terms {
		s, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		path = append(path, string(s))
	}
	if len(path) == 0 {
		w.wholeInput = true
		w.notCacheable("reads input as a whole")
		return
	}
	if path[0] == inputKeyMixer {
		w.mixerRef(path[1:])
		return
	}
	for id, leaf := range inputLeaves {
		switch {
		case len(path) <= len(leaf.path) && slices.Equal(path, leaf.path[:len(path)]):
			w.addLeaf(leafID(id), leaf.attrs)
		case len(path) > len(leaf.path) && slices.Equal(path[:len(leaf.path)], leaf.path):
			if leaf.mapLeaf() {
				w.leaves |= 1 << id
				w.add(attrRef{name: leaf.attrs[0].name, key: path[len(leaf.path)], keyed: true})
			} else {
				w.addLeaf(leafID(id), leaf.attrs)
			}
		}
	}
	// Any other path is never set by the input builder and stays undefined
	// whatever the bag holds: it references nothing.
}

func (w *refWalker) addLeaf(id leafID, refs []attrRef) {
	w.leaves |= 1 << id
	for _, r := range refs {
		w.add(r)
	}
}

func (w *refWalker) add(r attrRef) { w.refs[r] = true }

// mixerRef records a reference below input.mixer_attributes.
func (w *refWalker) mixerRef(path []string) {
	if len(path) == 0 {
		w.mixerAll = true
		w.notCacheable("reads input.%s as a whole or with a variable key", inputKeyMixer)
		return
	}
	name := path[0]
	w.mixer[name] = true
	if len(path) > 1 && attributes.Vocabulary[name] == attributes.KindStringMap {
		w.add(attrRef{name: name, key: path[1], keyed: true})
		return
	}
	w.add(attrRef{name: name})
}
