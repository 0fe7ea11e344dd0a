package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Lambda's limits on FilterCriteria.
const (
	// DefaultMaxFilters is Lambda's default quota of filters per event source mapping.
	DefaultMaxFilters = 5
	// RaisedMaxFilters is the quota Lambda grants on request.
	RaisedMaxFilters = 10
	// MaxPatternLength is the longest pattern Lambda accepts, in characters.
	MaxPatternLength = 4096
)

// Criteria is Lambda's FilterCriteria.
type Criteria struct {
	Filters []Filter `json:"Filters,omitempty"`
}

// Filter is one entry of FilterCriteria: a pattern, as a JSON string.
type Filter struct {
	Pattern string `json:"Pattern"`
}

// Error is a rejected FilterCriteria. Its message reads like Lambda's
// InvalidParameterValueException so it can be shown to the user as is.
type Error struct {
	// Filter is the index of the offending filter, or -1 for the criteria as a whole.
	Filter int
	// Path is the JSON path in the pattern, e.g. "body.price", or empty.
	Path string
	// Reason says what is wrong.
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("InvalidParameterValueException: ")
	if e.Filter < 0 {
		b.WriteString("Invalid filter criteria: ")
	} else {
		fmt.Fprintf(&b, "Invalid filter pattern definition: Filters[%d].Pattern", e.Filter)
		if e.Path != "" {
			fmt.Fprintf(&b, " at %q", e.Path)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Option changes how Compile validates.
type Option func(*options)

type options struct {
	maxFilters int
	source     Source
}

// WithMaxFilters raises (or lowers) the number of filters allowed, for mappings whose quota
// was raised to RaisedMaxFilters.
func WithMaxFilters(n int) Option { return func(o *options) { o.maxFilters = n } }

// ForSource applies the source's create-time rules: Kinesis rejects a data pattern that is
// not a JSON object. Without it, such a filter simply never matches a Kinesis record.
func ForSource(s Source) Option { return func(o *options) { o.source = s } }

// Matcher is a compiled FilterCriteria. It is immutable and safe for concurrent use.
type Matcher struct {
	filters []*objectPattern
}

// Compile validates criteria and compiles it. Criteria without filters yields a Matcher that
// matches every record, as a mapping without FilterCriteria does.
func Compile(criteria Criteria, opts ...Option) (*Matcher, error) {
	o := options{maxFilters: DefaultMaxFilters}
	for _, opt := range opts {
		opt(&o)
	}
	if len(criteria.Filters) > o.maxFilters {
		return nil, &Error{Filter: -1, Reason: fmt.Sprintf("%d filters exceed the maximum of %d per event source mapping", len(criteria.Filters), o.maxFilters)}
	}
	m := &Matcher{}
	for i, f := range criteria.Filters {
		p, err := compilePattern(f.Pattern, o.source)
		if err != nil {
			var fe *Error
			if errors.As(err, &fe) {
				fe.Filter = i
				return nil, fe
			}
			return nil, &Error{Filter: i, Reason: err.Error()}
		}
		m.filters = append(m.filters, p)
	}
	return m, nil
}

// CompilePatterns is Compile for a list of pattern strings, as the EventSourceMapping
// resource holds them.
func CompilePatterns(patterns []string, opts ...Option) (*Matcher, error) {
	c := Criteria{}
	for _, p := range patterns {
		c.Filters = append(c.Filters, Filter{Pattern: p})
	}
	return Compile(c, opts...)
}

// Filters reports how many filters were compiled; zero means every record matches.
func (m *Matcher) Filters() int { return len(m.filters) }

// --- compiled pattern tree ---

// objectPattern is an object in a pattern: its fields are AND-ed, and each $or group must
// have one alternative that matches the same object.
type objectPattern struct {
	fields []*fieldPattern
	ors    [][]*objectPattern
}

// fieldPattern is one named field: either a nested object or a leaf list.
type fieldPattern struct {
	name   string
	object *objectPattern
	leaf   *leafPattern
}

// leafPattern is the array of alternatives of a leaf; any one matching is enough.
type leafPattern struct {
	values      []valueMatcher
	existsTrue  bool
	existsFalse bool
}

func compilePattern(pattern string, source Source) (*objectPattern, error) {
	if n := utf8.RuneCountInString(pattern); n > MaxPatternLength {
		return nil, &Error{Reason: fmt.Sprintf("pattern is %d characters long; the maximum is %d", n, MaxPatternLength)}
	}
	if !utf8.ValidString(pattern) {
		return nil, &Error{Reason: "pattern is not valid UTF-8"}
	}
	dec := json.NewDecoder(strings.NewReader(pattern))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &Error{Reason: "pattern is not valid JSON: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &Error{Reason: "pattern is not valid JSON: unexpected data after the top-level object"}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &Error{Reason: "pattern must be a JSON object"}
	}
	if len(obj) == 0 {
		return nil, &Error{Reason: "pattern must name at least one field"}
	}
	p, err := compileObject(obj, "")
	if err != nil {
		return nil, err
	}
	if source == SourceKinesis {
		if err := checkKinesisData(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// checkKinesisData enforces "non-JSON data pattern → error at create or update" for streams.
func checkKinesisData(p *objectPattern) error {
	for _, f := range p.fields {
		if f.name == "data" && f.leaf != nil {
			return &Error{Path: "data", Reason: "Kinesis data is matched as JSON; its pattern must be a JSON object"}
		}
	}
	for _, alts := range p.ors {
		for _, a := range alts {
			if err := checkKinesisData(a); err != nil {
				return err
			}
		}
	}
	return nil
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func compileObject(obj map[string]any, path string) (*objectPattern, error) {
	names := make([]string, 0, len(obj))
	for k := range obj {
		names = append(names, k)
	}
	sort.Strings(names)
	p := &objectPattern{}
	for _, name := range names {
		v := obj[name]
		fpath := joinPath(path, name)
		if name == "$or" {
			alts, err := compileOr(v, fpath)
			if err != nil {
				return nil, err
			}
			p.ors = append(p.ors, alts)
			continue
		}
		switch val := v.(type) {
		case map[string]any:
			if len(val) == 0 {
				return nil, &Error{Path: fpath, Reason: "an object in a pattern must name at least one field"}
			}
			sub, err := compileObject(val, fpath)
			if err != nil {
				return nil, err
			}
			p.fields = append(p.fields, &fieldPattern{name: name, object: sub})
		case []any:
			leaf, err := compileLeaf(val, fpath)
			if err != nil {
				return nil, err
			}
			p.fields = append(p.fields, &fieldPattern{name: name, leaf: leaf})
		default:
			return nil, &Error{Path: fpath, Reason: fmt.Sprintf("match value must be an array or an object, not %s", describe(v))}
		}
	}
	return p, nil
}

func compileOr(v any, path string) ([]*objectPattern, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) < 2 {
		return nil, &Error{Path: path, Reason: "$or must be an array of at least two pattern objects"}
	}
	alts := make([]*objectPattern, 0, len(arr))
	for i, a := range arr {
		obj, ok := a.(map[string]any)
		if !ok || len(obj) == 0 {
			return nil, &Error{Path: fmt.Sprintf("%s[%d]", path, i), Reason: "each $or alternative must be a non-empty pattern object"}
		}
		p, err := compileObject(obj, path)
		if err != nil {
			return nil, err
		}
		alts = append(alts, p)
	}
	return alts, nil
}

func compileLeaf(arr []any, path string) (*leafPattern, error) {
	if len(arr) == 0 {
		return nil, &Error{Path: path, Reason: "empty arrays are not allowed; list at least one value"}
	}
	leaf := &leafPattern{}
	for _, el := range arr {
		switch v := el.(type) {
		case string:
			leaf.values = append(leaf.values, exactString(v))
		case json.Number:
			if _, err := finite(v); err != nil {
				return nil, &Error{Path: path, Reason: err.Error()}
			}
			leaf.values = append(leaf.values, exactNumber(v.String()))
		case bool:
			leaf.values = append(leaf.values, exactBool(v))
		case nil:
			leaf.values = append(leaf.values, exactNull{})
		case []any:
			return nil, &Error{Path: path, Reason: "nested arrays are not allowed in a match list"}
		case map[string]any:
			m, exists, err := compileOperator(v, path)
			if err != nil {
				return nil, err
			}
			switch {
			case exists == nil:
				leaf.values = append(leaf.values, m)
			case *exists:
				leaf.existsTrue = true
			default:
				leaf.existsFalse = true
			}
		}
	}
	return leaf, nil
}

// compileOperator compiles an operator object such as {"prefix": "us-"}. For exists it
// returns the flag instead of a matcher, since exists also decides what a missing field does.
func compileOperator(obj map[string]any, path string) (valueMatcher, *bool, error) {
	if len(obj) != 1 {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return nil, nil, &Error{Path: path, Reason: fmt.Sprintf("an operator object must have exactly one key, got %d (%s)", len(obj), strings.Join(keys, ", "))}
	}
	for op, arg := range obj {
		switch op {
		case "exists":
			b, ok := arg.(bool)
			if !ok {
				return nil, nil, &Error{Path: path, Reason: "exists takes true or false, not " + describe(arg)}
			}
			return nil, &b, nil
		case "prefix", "suffix":
			m, err := compileAffix(op, arg, path)
			return m, nil, err
		case "equals-ignore-case":
			s, ok := arg.(string)
			if !ok {
				return nil, nil, &Error{Path: path, Reason: "equals-ignore-case takes a string, not " + describe(arg)}
			}
			return ignoreCase(s), nil, nil
		case "numeric":
			m, err := compileNumeric(arg, path)
			return m, nil, err
		case "anything-but":
			m, err := compileAnythingBut(arg, path)
			return m, nil, err
		default:
			return nil, nil, &Error{Path: path, Reason: fmt.Sprintf("unrecognized match type %q (supported: prefix, suffix, equals-ignore-case, anything-but, numeric, exists)", op)}
		}
	}
	panic("unreachable")
}

func compileAffix(op string, arg any, path string) (valueMatcher, error) {
	switch v := arg.(type) {
	case string:
		return affix{suffix: op == "suffix", text: v}, nil
	case map[string]any:
		if s, ok := v["equals-ignore-case"].(string); ok && len(v) == 1 {
			return affix{suffix: op == "suffix", text: strings.ToLower(s), fold: true}, nil
		}
	}
	return nil, &Error{Path: path, Reason: fmt.Sprintf("%s takes a string or {\"equals-ignore-case\": string}, not %s", op, describe(arg))}
}

func compileAnythingBut(arg any, path string) (valueMatcher, error) {
	bad := func(why string) error {
		return &Error{Path: path, Reason: "anything-but " + why}
	}
	switch v := arg.(type) {
	case string:
		return anythingBut{inner: exactString(v)}, nil
	case json.Number:
		if _, err := finite(v); err != nil {
			return nil, bad(err.Error())
		}
		return anythingBut{inner: exactNumber(v.String())}, nil
	case []any:
		if len(v) == 0 {
			return nil, bad("needs at least one value")
		}
		set := valueSet{strings: map[string]bool{}, numbers: map[string]bool{}}
		for _, el := range v {
			switch e := el.(type) {
			case string:
				set.strings[e] = true
			case json.Number:
				if _, err := finite(e); err != nil {
					return nil, bad(err.Error())
				}
				set.numbers[e.String()] = true
			default:
				return nil, bad("lists may hold only strings and numbers, not " + describe(el))
			}
		}
		return anythingBut{inner: set}, nil
	case map[string]any:
		if len(v) != 1 {
			return nil, bad("takes one of prefix, suffix or equals-ignore-case")
		}
		for op, inner := range v {
			switch op {
			case "prefix", "suffix":
				s, ok := inner.(string)
				if !ok {
					return nil, bad(op + " takes a string, not " + describe(inner))
				}
				return anythingBut{inner: affix{suffix: op == "suffix", text: s}}, nil
			case "equals-ignore-case":
				switch e := inner.(type) {
				case string:
					return anythingBut{inner: ignoreCase(e)}, nil
				case []any:
					if len(e) == 0 {
						return nil, bad("equals-ignore-case needs at least one string")
					}
					var alts anyOf
					for _, s := range e {
						str, ok := s.(string)
						if !ok {
							return nil, bad("equals-ignore-case lists may hold only strings, not " + describe(s))
						}
						alts = append(alts, ignoreCase(str))
					}
					return anythingBut{inner: alts}, nil
				}
				return nil, bad("equals-ignore-case takes a string or a list of strings, not " + describe(inner))
			}
			return nil, bad(fmt.Sprintf("does not support %q (supported: prefix, suffix, equals-ignore-case)", op))
		}
	}
	return nil, bad("takes a string, a number, a list of them, or an object, not " + describe(arg))
}

func compileNumeric(arg any, path string) (valueMatcher, error) {
	bad := func(why string) error {
		return &Error{Path: path, Reason: "numeric " + why}
	}
	arr, ok := arg.([]any)
	if !ok || len(arr) == 0 || len(arr)%2 != 0 || len(arr) > 4 {
		return nil, bad("takes [op, number] or [lower-op, number, upper-op, number], e.g. [\">\", 10, \"<=\", 20]")
	}
	r := numericRange{lower: math.Inf(-1), upper: math.Inf(1), lowerIncl: true, upperIncl: true}
	var haveLower, haveUpper bool
	for i := 0; i < len(arr); i += 2 {
		op, ok := arr[i].(string)
		if !ok {
			return nil, bad("expects an operator string, not " + describe(arr[i]))
		}
		num, ok := arr[i+1].(json.Number)
		if !ok {
			return nil, bad(fmt.Sprintf("operator %q needs a number, not %s", op, describe(arr[i+1])))
		}
		f, err := finite(num)
		if err != nil {
			return nil, bad(err.Error())
		}
		switch op {
		case "=":
			if len(arr) != 2 {
				return nil, bad("\"=\" can't be combined with other operators")
			}
			return numericRange{lower: f, upper: f, lowerIncl: true, upperIncl: true}, nil
		case ">", ">=":
			if haveLower {
				return nil, bad("has two lower bounds")
			}
			haveLower = true
			r.lower, r.lowerIncl = f, op == ">="
		case "<", "<=":
			if haveUpper {
				return nil, bad("has two upper bounds")
			}
			haveUpper = true
			r.upper, r.upperIncl = f, op == "<="
		default:
			return nil, bad(fmt.Sprintf("has unrecognized operator %q (supported: =, <, <=, >, >=)", op))
		}
	}
	if haveLower && haveUpper && (r.lower > r.upper || (r.lower == r.upper && !(r.lowerIncl && r.upperIncl))) {
		return nil, bad("range is empty: the lower bound must be below the upper bound")
	}
	return r, nil
}

func finite(n json.Number) (float64, error) {
	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("number %s is out of range", n.String())
	}
	return f, nil
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case json.Number:
		return "number " + x.String()
	case bool:
		return strconv.FormatBool(x)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// decodeJSON decodes b with numbers kept as their text. It reports false for invalid JSON
// or trailing data.
func decodeJSON(b []byte) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return v, true
}
