package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	ic "github.com/remora-mesh/remora/internal/config"
	"gopkg.in/yaml.v3"
)

// Parse decodes a YAML configuration strictly, applies defaults and
// validates it. Every problem is reported with its field path.
func Parse(data []byte) (*Bootstrap, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, errEOF(err)) {
			return nil, errors.New("config: empty configuration")
		}
		return nil, fmt.Errorf("config: %s", ic.YAMLError(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, errors.New("config: more than one YAML document")
	}
	var b Bootstrap
	// Decoding problems and validation problems are reported together, so
	// one run of `remora validate` names every mistake.
	decErr := ic.DecodeStrict(&root, &b)
	b.ApplyDefaults()
	if err := errors.Join(decErr, b.Validate()); err != nil {
		return nil, err
	}
	return &b, nil
}

// errEOF returns err when it is io.EOF-like (yaml.v3 returns io.EOF for an
// empty document stream), so Parse can say "empty configuration".
func errEOF(err error) error {
	if err.Error() == "EOF" {
		return err
	}
	return errNotEOF
}

var errNotEOF = errors.New("not eof")

// Load reads and parses the configuration file at path.
func Load(path string) (*Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data)
}

// Marshal renders b as YAML. Parse(Marshal(b)) yields b again.
func Marshal(b *Bootstrap) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	return buf.Bytes(), nil
}
