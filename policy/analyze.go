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
	if a.needs.leaves.has(leafHTTPHeaders) && !a.needs.leaves.has(leafParsedBody) && !w.refs[attrRef{name: attributes.RequestHeaders}] {
		// Only constant keys of the headers are read: build just those.
		a.needs.headerKeys = []string{}
		for r := range w.refs {
			if r.keyed && r.name == attributes.RequestHeaders {
				a.needs.headerKeys = append(a.needs.headerKeys, r.key)
			}
		}
		slices.Sort(a.needs.headerKeys)
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

	aliases    *aliases // of the rule being walked; nil when none
	reason     string   // first reason the policy is not cacheable
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
	for i, t := range ref[1:] {
		if !t.IsGround() {
			break
		}
		child := node.Child(t.Value)
		if child == nil {
			return
		}
		node = child
		if rest := ref[i+2:]; len(rest) > 0 && len(node.Children) == 0 && len(node.Values) == 1 {
			if target, ok := ruleAlias(node.Values[0]); ok {
				// data.pkg.http_request.method where http_request :=
				// input.attributes.request.http reads input...http.method.
				w.input(append(target[1:].Copy(), rest...))
				for _, t := range rest {
					if !t.IsGround() {
						w.walk(t)
					}
				}
				return
			}
		}
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
		saved := w.aliases
		w.aliases = findAliases(r)
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
		w.aliases = saved
	}
}

// ruleAlias reports whether r is a plain alias of a constant reference
// into input, p := input.attributes.request.http, compiled as
// p := __local0__ if __local0__ = input.attributes.request.http, and
// returns the reference. Reading data.pkg.p.method then reads
// input.attributes.request.http.method: the rule is the only one at its
// path, so data.pkg.p.method is undefined exactly when the input path is.
func ruleAlias(r *ast.Rule) (ast.Ref, bool) {
	if r.Else != nil || len(r.Head.Args) > 0 || r.Head.Key != nil || r.Default || len(r.Body) != 1 || len(r.Body[0].With) > 0 || r.Body[0].Negated {
		return nil, false
	}
	if len(r.Head.Reference) != 1 || r.Head.Value == nil {
		return nil, false
	}
	e := r.Body[0]
	if !e.IsCall() || len(e.Operands()) != 2 || (e.Operator().String() != "eq" && e.Operator().String() != "assign") {
		return nil, false
	}
	for _, pair := range [][2]*ast.Term{{e.Operand(0), e.Operand(1)}, {e.Operand(1), e.Operand(0)}} {
		if !pair[0].Equal(r.Head.Value) {
			continue
		}
		if _, ok := pair[0].Value.(ast.Var); !ok {
			continue
		}
		ref, ok := pair[1].Value.(ast.Ref)
		if ok && ref[0].Value.Compare(ast.InputRootDocument.Value) == 0 && constantStrings(ref[1:]) {
			return ref, true
		}
	}
	return nil, false
}

func constantStrings(ts []*ast.Term) bool {
	for _, t := range ts {
		if _, ok := t.Value.(ast.String); !ok {
			return false
		}
	}
	return true
}

// aliases are the local variables of one rule bound to a constant
// reference into input (h := input.attributes.request.http.headers) and
// used only as the head of references (h["x-user"], h.authorization), so
// that h["x-user"] references what input.attributes.request.http.headers["x-user"]
// references instead of the whole map.
type aliases struct {
	paths map[ast.Var]ast.Ref   // variable → the input reference it is bound to
	exprs map[*ast.Expr]ast.Var // the binding expressions
}

// findAliases finds the rule's input aliases. A variable qualifies when
// exactly one expression binds it (x = ref, x := ref) to one of the
// aliasTargets, and every other
// occurrence of it, anywhere in the rule, is the head of a longer
// reference. Anything else keeps the conservative treatment.
func findAliases(r *ast.Rule) *aliases {
	a := &aliases{paths: map[ast.Var]ast.Ref{}, exprs: map[*ast.Expr]ast.Var{}}
	binds := map[ast.Var]int{}
	ast.NewGenericVisitor(func(x any) bool {
		e, ok := x.(*ast.Expr)
		if !ok || !e.IsCall() || len(e.Operands()) != 2 {
			return false
		}
		op := e.Operator().String()
		if op != "eq" && op != "assign" {
			return false
		}
		for _, pair := range [][2]*ast.Term{{e.Operand(0), e.Operand(1)}, {e.Operand(1), e.Operand(0)}} {
			v, ok := pair[0].Value.(ast.Var)
			if !ok || v.IsWildcard() {
				continue
			}
			binds[v]++
			ref, ok := pair[1].Value.(ast.Ref)
			if !ok || ref[0].Value.Compare(ast.InputRootDocument.Value) != 0 || !aliasTarget(ref[1:]) {
				continue
			}
			a.paths[v] = ref
			a.exprs[e] = v
		}
		return false
	}).Walk(r)
	for v, n := range binds {
		if n > 1 {
			delete(a.paths, v)
		}
	}
	if len(a.paths) == 0 {
		return nil
	}
	// Every other occurrence must head a longer reference.
	ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Expr:
			if v, ok := a.exprs[x]; ok && a.paths[v] != nil {
				return true // the binding itself
			}
		case ast.Ref:
			if v, ok := x[0].Value.(ast.Var); ok && a.paths[v] != nil && len(x) > 1 {
				for _, t := range x[1:] {
					ast.NewGenericVisitor(func(y any) bool {
						if yv, ok := y.(ast.Var); ok {
							delete(a.paths, yv)
						}
						return false
					}).Walk(t)
				}
				return true
			}
		case ast.Var:
			delete(a.paths, x)
		}
		return false
	}).Walk(r)
	for e, v := range a.exprs {
		if a.paths[v] == nil {
			delete(a.exprs, e)
		}
	}
	if len(a.paths) == 0 {
		return nil
	}
	return a
}

// aliasTargets are the input objects a variable may alias. Binding a
// variable fails when its target is undefined, so a target must exist
// whatever the bag holds: the builder always emits these objects (empty
// if need be) whenever the policy reads below them. Other objects, such as
// source or labels, exist only when the bag has their attributes.
var aliasTargets = [][]string{
	{"attributes", "request", "http"},
	{"attributes", "request", "http", "headers"},
}

func aliasTarget(ts []*ast.Term) bool {
	path := make([]string, 0, len(ts))
	for _, t := range ts {
		s, ok := t.Value.(ast.String)
		if !ok {
			return false
		}
		path = append(path, string(s))
	}
	for _, target := range aliasTargets {
		if slices.Equal(path, target) {
			return true
		}
	}
	return false
}

// walk visits x and everything below it.
func (w *refWalker) walk(x any) {
	ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case *ast.Expr:
			if w.aliases != nil {
				if _, ok := w.aliases.exprs[v]; ok {
					return true // an alias binding: read through its uses
				}
			}
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
	if v, ok := r[0].Value.(ast.Var); ok && w.aliases != nil {
		if target := w.aliases.paths[v]; target != nil {
			w.input(append(target[1:].Copy(), r[1:]...))
			for _, t := range r[1:] {
				if !t.IsGround() {
					w.walk(t)
				}
			}
			return true
		}
	}
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
			if leaf.mapLeaf() && path[len(leaf.path)] != "" { // "" would read as "whole" on the wire
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
	if len(path) > 1 && path[1] != "" && attributes.Vocabulary[name] == attributes.KindStringMap {
		w.add(attrRef{name: name, key: path[1], keyed: true})
		return
	}
	w.add(attrRef{name: name})
}
