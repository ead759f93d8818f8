package flags

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// maxProblems bounds the problems one refused file reports.
const maxProblems = 20

// Values are the flag values of one version of a values file, parsed
// against a Registry: what a [Snapshot] evaluates. A Values never changes.
type Values struct {
	entries []*entry // by flag index; nil: the flag's default
	names   []string // of the flags the file sets, sorted
	raw     map[string]string
	id      string
}

// ID is the SHA-256 (hex) of the file's bytes; "defaults" for the values
// a Set starts with.
func (v *Values) ID() string { return v.id }

// Names lists the flags the values set, sorted.
func (v *Values) Names() []string { return slices.Clone(v.names) }

// Raw returns the value the values give the flag called name, as compact
// JSON ({"percent":10}), and whether they set it at all (the defaults set
// none). It is for displays such as an admin page; evaluations do not use
// it.
func (v *Values) Raw(name string) (string, bool) {
	s, ok := v.raw[name]
	return s, ok
}

// Changed lists, sorted, the flags whose values differ between from and
// v (a flag that one sets and the other does not included).
func (v *Values) Changed(from *Values) []string {
	var out []string
	seen := map[string]bool{}
	for _, vs := range []*Values{v, from} {
		if vs == nil {
			continue
		}
		for name := range vs.raw {
			if seen[name] {
				continue
			}
			seen[name] = true
			var a, b string
			if v != nil {
				a = v.raw[name]
			}
			if from != nil {
				b = from.raw[name]
			}
			if a != b {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// entry is one flag's value, compiled.
type entry struct {
	deny   map[string]bool // keys that get denyTo
	denyTo int             // off for a bool, the default variant otherwise
	allow  map[string]int  // key -> variant
	rules  []rule
	rest   outcome // everyone else
}

// outcome decides a variant: fixed, or split by bucket.
type outcome struct {
	fixed  int     // variant index; -1: split
	split  []bound // when fixed < 0: the first bound above the bucket wins
	reason Reason
}

type bound struct {
	upper   uint32
	variant int
}

// rule: when the attribute has one of the values, the outcome decides.
type rule struct {
	attr   string
	values []string
	then   outcome
}

// Reason says why an evaluation gave its variant. The values are
// OpenFeature's resolution reasons.
type Reason string

const (
	// ReasonDefault: the values say nothing about the flag (or nothing
	// applied): the definition's default, or its default weights.
	ReasonDefault Reason = "DEFAULT"
	// ReasonStatic: the values give everyone the same variant.
	ReasonStatic Reason = "STATIC"
	// ReasonSplit: a percentage or weights, by the key's bucket.
	ReasonSplit Reason = "SPLIT"
	// ReasonTargeting: an allow or deny list, or a rule on attributes.
	ReasonTargeting Reason = "TARGETING_MATCH"
)

// Parse parses a values file's bytes (JSON) against reg. source names
// the file in errors. A file that fails to parse, names an unknown flag,
// gives a flag the wrong kind or a value out of range is refused whole:
// the error joins a *FileError for each problem (up to 20). See the
// package documentation for the format.
func Parse(reg *Registry, source string, data []byte) (*Values, error) {
	sum := sha256.Sum256(data)
	v := &Values{id: hex.EncodeToString(sum[:]), raw: map[string]string{}}
	fileErr := func(err error) error { return &FileError{File: source, Err: err} }
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fileErr(problem(ErrSyntax, "the file is empty (an empty object, {}, sets no flag)"))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fileErr(problem(ErrSyntax, "the file is not an object of flags (%s)", syntaxWhy(err, tok)))
	}
	list := reg.flags()
	v.entries = make([]*entry, len(list))
	var errs []error
	add := func(name string, err error) {
		if len(errs) < maxProblems {
			errs = append(errs, &FileError{File: source, Flag: name, Err: err})
		}
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fileErr(problem(ErrSyntax, "%v", err))
		}
		name := tok.(string) // object keys are strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fileErr(problem(ErrSyntax, "flag %q: %v", name, err))
		}
		if _, dup := v.raw[name]; dup {
			add(name, problem(ErrSyntax, "set twice"))
			continue
		}
		var canon bytes.Buffer
		if err := json.Compact(&canon, raw); err == nil {
			v.raw[name] = canon.String()
		}
		f := reg.lookup(name)
		if f == nil {
			add(name, problem(ErrUnknownFlag, "not registered"))
			continue
		}
		e, err := compile(f, raw)
		if err != nil {
			add(name, err)
			continue
		}
		v.entries[f.index] = e
		v.names = append(v.names, name)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fileErr(problem(ErrSyntax, "the object of flags does not end (%s)", syntaxWhy(err, tok)))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fileErr(problem(ErrSyntax, "more after the object of flags"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(v.names)
	return v, nil
}

func syntaxWhy(err error, tok json.Token) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("found %v", tok)
}

// The shapes of a flag's value in the file.
type (
	boolValue struct {
		On      *bool      `json:"on"`
		Percent *float64   `json:"percent"`
		Allow   []string   `json:"allow"`
		Deny    []string   `json:"deny"`
		Rules   []boolRule `json:"rules"`
	}
	boolRule struct {
		Attribute string   `json:"attribute"`
		Values    []string `json:"values"`
		On        *bool    `json:"on"`
		Percent   *float64 `json:"percent"`
	}
	variantValue struct {
		Variant *string             `json:"variant"`
		Weights map[string]float64  `json:"weights"`
		Allow   map[string][]string `json:"allow"`
		Deny    []string            `json:"deny"`
		Rules   []variantRule       `json:"rules"`
	}
	variantRule struct {
		Attribute string             `json:"attribute"`
		Values    []string           `json:"values"`
		Variant   *string            `json:"variant"`
		Weights   map[string]float64 `json:"weights"`
	}
)

// compile checks one flag's value against its definition.
func compile(f *flag, raw json.RawMessage) (*entry, error) {
	var shape any
	if err := json.Unmarshal(raw, &shape); err != nil {
		return nil, problem(ErrSyntax, "%v", err)
	}
	kind := f.info.Kind
	switch s := shape.(type) {
	case bool:
		if kind != KindBool {
			return nil, problem(ErrWrongKind, "a %s flag given a boolean (%s); name a variant of %s", kind, raw, quoteList(f.variants))
		}
		return &entry{rest: fixed(b2i(s), ReasonStatic)}, nil
	case string:
		if kind == KindBool {
			return nil, problem(ErrWrongKind, "a bool flag given a string (%s); use true, false or {\"percent\": n}", raw)
		}
		i := slices.Index(f.variants, s)
		if i < 0 {
			return nil, problem(ErrInvalid, "no variant %q (variants: %s)", s, quoteList(f.variants))
		}
		return &entry{rest: fixed(i, ReasonStatic)}, nil
	case map[string]any:
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if kind == KindBool {
			if _, ok := s["weights"]; ok {
				return nil, problem(ErrWrongKind, "a bool flag given weights; use \"percent\"")
			}
			if _, ok := s["variant"]; ok {
				return nil, problem(ErrWrongKind, "a bool flag given a variant; use \"on\"")
			}
			var b boolValue
			if err := dec.Decode(&b); err != nil {
				return nil, problem(ErrInvalid, "%s", strings.TrimPrefix(err.Error(), "json: "))
			}
			return compileBool(f, b)
		}
		for _, k := range []string{"percent", "on"} {
			if _, ok := s[k]; ok {
				return nil, problem(ErrWrongKind, "a %s flag given %q; use \"weights\" or \"variant\"", kind, k)
			}
		}
		var vv variantValue
		if err := dec.Decode(&vv); err != nil {
			return nil, problem(ErrInvalid, "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return compileVariant(f, vv)
	default:
		if kind == KindBool {
			return nil, problem(ErrWrongKind, "a bool flag given %s; use true, false or {\"percent\": n}", raw)
		}
		return nil, problem(ErrWrongKind, "a %s flag given %s; name a variant or give {\"weights\": {...}}", kind, raw)
	}
}

func compileBool(f *flag, b boolValue) (*entry, error) {
	e := &entry{rest: outcome{fixed: f.dflt, reason: ReasonDefault}, denyTo: 0}
	rest, err := boolOutcome(b.On, b.Percent, "")
	if err != nil {
		return nil, err
	}
	if rest != nil {
		e.rest = *rest
	}
	e.deny = keySet(b.Deny)
	if len(b.Allow) > 0 {
		e.allow = make(map[string]int, len(b.Allow))
		for _, k := range b.Allow {
			e.allow[k] = 1
		}
	}
	for i, r := range b.Rules {
		where := fmt.Sprintf("rule %d: ", i+1)
		if err := checkRule(where, r.Attribute, r.Values); err != nil {
			return nil, err
		}
		then, err := boolOutcome(r.On, r.Percent, where)
		if err != nil {
			return nil, err
		}
		if then == nil {
			return nil, problem(ErrInvalid, "%sneither \"on\" nor \"percent\"", where)
		}
		then.reason = ReasonTargeting
		e.rules = append(e.rules, rule{attr: r.Attribute, values: r.Values, then: *then})
	}
	return e, nil
}

// boolOutcome is "on" or "percent"; nil when neither is set.
func boolOutcome(on *bool, percent *float64, where string) (*outcome, error) {
	switch {
	case on != nil && percent != nil:
		return nil, problem(ErrInvalid, "%sboth \"on\" and \"percent\"", where)
	case on != nil:
		o := fixed(b2i(*on), ReasonStatic)
		return &o, nil
	case percent != nil:
		p := *percent
		if math.IsNaN(p) || p < 0 || p > 100 {
			return nil, problem(ErrInvalid, "%spercent %v is not within 0–100", where, p)
		}
		t := threshold(p)
		return &outcome{fixed: -1, split: []bound{{t, 1}, {Buckets, 0}}, reason: ReasonSplit}, nil
	}
	return nil, nil
}

// threshold is the number of buckets, from 0, that a percentage enables:
// round(percent × 1000).
func threshold(percent float64) uint32 {
	return uint32(math.Round(percent * Buckets / 100))
}

func compileVariant(f *flag, vv variantValue) (*entry, error) {
	e := &entry{rest: defaultOutcome(f), denyTo: f.dflt}
	rest, err := variantOutcome(f, vv.Variant, vv.Weights, "")
	if err != nil {
		return nil, err
	}
	if rest != nil {
		e.rest = *rest
	}
	e.deny = keySet(vv.Deny)
	for name, keys := range vv.Allow {
		i := slices.Index(f.variants, name)
		if i < 0 {
			return nil, problem(ErrInvalid, "allow: no variant %q (variants: %s)", name, quoteList(f.variants))
		}
		if e.allow == nil {
			e.allow = map[string]int{}
		}
		for _, k := range keys {
			if j, dup := e.allow[k]; dup && j != i {
				return nil, problem(ErrInvalid, "allow: key %q is given to %q and %q", k, f.variants[j], name)
			}
			e.allow[k] = i
		}
	}
	for i, r := range vv.Rules {
		where := fmt.Sprintf("rule %d: ", i+1)
		if err := checkRule(where, r.Attribute, r.Values); err != nil {
			return nil, err
		}
		then, err := variantOutcome(f, r.Variant, r.Weights, where)
		if err != nil {
			return nil, err
		}
		if then == nil {
			return nil, problem(ErrInvalid, "%sneither \"variant\" nor \"weights\"", where)
		}
		then.reason = ReasonTargeting
		e.rules = append(e.rules, rule{attr: r.Attribute, values: r.Values, then: *then})
	}
	return e, nil
}

// variantOutcome is "variant" or "weights"; nil when neither is set.
func variantOutcome(f *flag, variant *string, weights map[string]float64, where string) (*outcome, error) {
	switch {
	case variant != nil && weights != nil:
		return nil, problem(ErrInvalid, "%sboth \"variant\" and \"weights\"", where)
	case variant != nil:
		i := slices.Index(f.variants, *variant)
		if i < 0 {
			return nil, problem(ErrInvalid, "%sno variant %q (variants: %s)", where, *variant, quoteList(f.variants))
		}
		o := fixed(i, ReasonStatic)
		return &o, nil
	case weights != nil:
		w := make([]float64, len(f.variants))
		for name, x := range weights {
			i := slices.Index(f.variants, name)
			if i < 0 {
				return nil, problem(ErrInvalid, "%sweights: no variant %q (variants: %s)", where, name, quoteList(f.variants))
			}
			if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
				return nil, problem(ErrInvalid, "%sweights: %q has weight %v; weights are numbers ≥ 0", where, name, x)
			}
			w[i] = x
		}
		o, ok := splitOutcome(w)
		if !ok {
			return nil, problem(ErrInvalid, "%sweights: all zero", where)
		}
		return &o, nil
	}
	return nil, nil
}

// defaultOutcome is a variant flag's outcome while the file does not say:
// its default weights, or its default variant.
func defaultOutcome(f *flag) outcome {
	if f.split != nil {
		return *f.split
	}
	return outcome{fixed: f.dflt, reason: ReasonDefault}
}

// splitOutcome gives variant i the buckets [c(i-1), c(i)), with c(i) =
// floor(Buckets × (w0 + … + wi) / W), W the sum of the weights, in the
// order of the definition. It reports false when every weight is zero.
func splitOutcome(w []float64) (outcome, bool) {
	var total float64
	for _, x := range w {
		total += x
	}
	if total <= 0 || math.IsInf(total, 0) {
		return outcome{}, false
	}
	o := outcome{fixed: -1, reason: ReasonSplit}
	var sum float64
	for i, x := range w {
		sum += x
		if x == 0 {
			continue
		}
		c := uint32(math.Floor(Buckets * sum / total))
		if i == lastNonZero(w) {
			c = Buckets
		}
		o.split = append(o.split, bound{c, i})
	}
	return o, true
}

func lastNonZero(w []float64) int {
	for i := len(w) - 1; i >= 0; i-- {
		if w[i] != 0 {
			return i
		}
	}
	return -1
}

func fixed(i int, r Reason) outcome { return outcome{fixed: i, reason: r} }

func checkRule(where, attr string, values []string) error {
	switch {
	case attr == "":
		return problem(ErrInvalid, "%sno \"attribute\"", where)
	case len(values) == 0:
		return problem(ErrInvalid, "%sno \"values\" for attribute %q", where, attr)
	}
	return nil
}

func keySet(keys []string) map[string]bool {
	if len(keys) == 0 {
		return nil
	}
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
