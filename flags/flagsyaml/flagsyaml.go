// Package flagsyaml reads YAML values files for package flags, which
// reads JSON itself and imports no YAML parser:
//
//	set := flags.New(&registry, "/etc/app/flags.yaml", flags.Options{YAML: flagsyaml.ToJSON})
//
// The YAML is go.yaml.in/yaml/v3's (YAML 1.2 for booleans: only true and
// false are booleans, "on" and "yes" are strings).
package flagsyaml

import (
	"encoding/json"
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// ToJSON converts a YAML document (the first, if there are several) to
// JSON. It refuses what JSON cannot say or a values file should not hold:
// a mapping key that is not a scalar, a key that repeats, aliases (which
// could expand a small file into a huge one).
func ToJSON(data []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	if doc.Kind == 0 {
		return nil, errors.New("yaml: the document is empty")
	}
	v, err := convert(&doc)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func convert(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, fmt.Errorf("yaml: line %d: one document expected", n.Line)
		}
		return convert(n.Content[0])
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "!!int" && k.Tag != "!!float") {
				return nil, fmt.Errorf("yaml: line %d: a mapping key must be a string", k.Line)
			}
			if _, dup := m[k.Value]; dup {
				return nil, fmt.Errorf("yaml: line %d: key %q repeats", k.Line, k.Value)
			}
			val, err := convert(v)
			if err != nil {
				return nil, err
			}
			m[k.Value] = val
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			val, err := convert(c)
			if err != nil {
				return nil, err
			}
			s = append(s, val)
		}
		return s, nil
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("yaml: line %d: %w", n.Line, err)
		}
		return v, nil
	case yaml.AliasNode:
		return nil, fmt.Errorf("yaml: line %d: aliases are not supported", n.Line)
	}
	return nil, fmt.Errorf("yaml: line %d: unsupported node", n.Line)
}
