package policy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/util"
)

// sourceFile is one file read from the configured paths.
type sourceFile struct {
	// root is the configured path the file was found under; data documents
	// are placed at their directory relative to it.
	root string
	path string
	data []byte
}

// sourceSet is everything read from the configured paths, in a stable
// order, with a digest of names and contents that the watcher compares.
type sourceSet struct {
	files  []sourceFile
	digest [sha256.Size]byte
}

// maxPolicyFileBytes bounds one policy, data or bundle file.
const maxPolicyFileBytes = 64 << 20

// readSources reads the configured paths: files as given, directories
// recursively (.rego, .json, .yaml, .yml; names starting with "." are
// skipped, which also skips Kubernetes' ..data links).
func readSources(paths []string) (*sourceSet, error) {
	set := &sourceSet{}
	var errs []error
	for _, root := range paths {
		st, err := os.Stat(root)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", root, err))
			continue
		}
		if !st.IsDir() {
			f, err := readSourceFile(root, root)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			set.files = append(set.files, f)
			continue
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != root && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !isDirSource(p) {
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				st, err := os.Stat(p)
				if err != nil || !st.Mode().IsRegular() {
					return nil
				}
			} else if !d.Type().IsRegular() {
				return nil
			}
			f, err := readSourceFile(root, p)
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			set.files = append(set.files, f)
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", root, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, f := range set.files {
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00", f.root, f.path, len(f.data))
		h.Write(f.data)
	}
	h.Sum(set.digest[:0])
	return set, nil
}

func readSourceFile(root, p string) (sourceFile, error) {
	fh, err := os.Open(p)
	if err != nil {
		return sourceFile{}, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxPolicyFileBytes+1))
	if err != nil {
		return sourceFile{}, fmt.Errorf("%s: %w", p, err)
	}
	if len(data) > maxPolicyFileBytes {
		return sourceFile{}, fmt.Errorf("%s: larger than %d bytes", p, maxPolicyFileBytes)
	}
	return sourceFile{root: root, path: p, data: data}, nil
}

func isDirSource(p string) bool {
	switch filepath.Ext(p) {
	case ".rego", ".json", ".yaml", ".yml":
		return true
	}
	return false
}

func isBundle(p string) bool { return strings.HasSuffix(p, ".tar.gz") || strings.HasSuffix(p, ".tgz") }

// loaded is the parsed content of a source set.
type loaded struct {
	modules map[string]*ast.Module
	data    map[string]any
	// v0 names the modules parsed as Rego v0.
	v0 []string
}

// parseSources parses modules, data documents and bundles. Every problem
// names its file (and line, for Rego); all problems are returned joined.
func parseSources(set *sourceSet, embedded map[string]string, regoVersion string) (*loaded, error) {
	l := &loaded{modules: map[string]*ast.Module{}, data: map[string]any{}}
	var errs []error
	names := make([]string, 0, len(embedded))
	for name := range embedded {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := l.addModule(name, embedded[name], regoVersion); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range set.files {
		var err error
		switch {
		case isBundle(f.path):
			err = l.addBundle(f, regoVersion)
		case filepath.Ext(f.path) == ".rego":
			err = l.addModule(f.path, string(f.data), regoVersion)
		case isDirSource(f.path):
			err = l.addData(f)
		default:
			err = fmt.Errorf("%s: unsupported file type (want .rego, .json, .yaml, .yml or a .tar.gz bundle)", f.path)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(l.modules) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no Rego modules found"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return l, nil
}

// parseModule parses one module in the configured Rego version; in auto
// mode a module that is not valid Rego v1 is tried as Rego v0.
func parseModule(name, text, regoVersion string) (m *ast.Module, v0 bool, err error) {
	opts := ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}
	if regoVersion == RegoVersionV0 {
		opts.RegoVersion = ast.RegoV0
	}
	m, err = ast.ParseModuleWithOpts(name, text, opts)
	if err != nil && regoVersion == RegoVersionAuto {
		opts.RegoVersion = ast.RegoV0
		if m0, err0 := ast.ParseModuleWithOpts(name, text, opts); err0 == nil && m0 != nil {
			return m0, true, nil
		}
	}
	if err != nil {
		return nil, false, err
	}
	if m == nil {
		return nil, false, fmt.Errorf("%s: empty module", name)
	}
	return m, opts.RegoVersion == ast.RegoV0, nil
}

func (l *loaded) addModule(name, text, regoVersion string) error {
	m, v0, err := parseModule(name, text, regoVersion)
	if err != nil {
		return err
	}
	if _, dup := l.modules[name]; dup {
		return fmt.Errorf("%s: module loaded twice", name)
	}
	l.modules[name] = m
	if v0 {
		l.v0 = append(l.v0, name)
	}
	return nil
}

// addData places a JSON or YAML document at the path of its directory
// relative to its root, as OPA's loader does.
func (l *loaded) addData(f sourceFile) error {
	var doc any
	if err := util.Unmarshal(f.data, &doc); err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	if doc == nil {
		return nil
	}
	var prefix []string
	if f.root != f.path {
		rel, err := filepath.Rel(f.root, filepath.Dir(f.path))
		if err == nil && rel != "." {
			prefix = strings.Split(filepath.ToSlash(rel), "/")
		}
	}
	for i := len(prefix) - 1; i >= 0; i-- {
		doc = map[string]any{prefix[i]: doc}
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: a data document at the root of data must be an object", f.path)
	}
	if err := mergeData(l.data, obj, nil); err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	return nil
}

// mergeData merges src into dst; two values at one path conflict unless
// both are objects.
func mergeData(dst, src map[string]any, path []string) error {
	for k, v := range src {
		old, ok := dst[k]
		if !ok {
			dst[k] = v
			continue
		}
		om, ok1 := old.(map[string]any)
		nm, ok2 := v.(map[string]any)
		if !ok1 || !ok2 {
			return fmt.Errorf("data conflict at data.%s", strings.Join(append(slices.Clone(path), k), "."))
		}
		if err := mergeData(om, nm, append(path, k)); err != nil {
			return err
		}
	}
	return nil
}

// addBundle reads an OPA bundle (.tar.gz). In auto mode a bundle whose
// modules are not valid Rego v1 is read again as Rego v0; a manifest's
// rego_version always wins.
func (l *loaded) addBundle(f sourceFile, regoVersion string) error {
	read := func(v ast.RegoVersion) (bundle.Bundle, error) {
		return bundle.NewReader(bytes.NewReader(f.data)).
			WithRegoVersion(v).
			WithProcessAnnotations(true).
			WithSkipBundleVerification(true).
			WithBundleName(f.path).
			Read()
	}
	v := ast.RegoV1
	if regoVersion == RegoVersionV0 {
		v = ast.RegoV0
	}
	b, err := read(v)
	v0 := v == ast.RegoV0
	if err != nil && regoVersion == RegoVersionAuto {
		if b0, err0 := read(ast.RegoV0); err0 == nil {
			b, err, v0 = b0, nil, true
		}
	}
	if err != nil {
		return fmt.Errorf("bundle %s: %w", f.path, err)
	}
	for _, mf := range b.Modules {
		name := f.path + ":" + strings.TrimPrefix(mf.Path, "/")
		if mf.Parsed == nil {
			continue
		}
		if _, dup := l.modules[name]; dup {
			return fmt.Errorf("bundle %s: module %s loaded twice", f.path, mf.Path)
		}
		l.modules[name] = mf.Parsed
		if v0 {
			l.v0 = append(l.v0, name)
		}
	}
	if len(b.Data) > 0 {
		if err := mergeData(l.data, b.Data, nil); err != nil {
			return fmt.Errorf("bundle %s: %w", f.path, err)
		}
	}
	return nil
}
