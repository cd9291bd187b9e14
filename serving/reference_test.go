package serving

// The request decoding seer did with encoding/json before decode.go, kept
// as the reference the new decoder is held to (TestDecodeMessages,
// FuzzDecodeRequest) and the response encoder is compared with
// (TestAppendResults). The type names matter: encoding/json's type errors
// name them, and the new decoder repeats those names.
//
// One change from the code that served: decodeJSON refuses a stray '}' or
// ']' after the body, which json.Decoder.More let through. The on_degraded
// fields came later, decoded as strings as the other string fields are.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"

	"github.com/seer-ml/seer/features"
)

type (
	predictRequest struct {
		Queries    []predictQuery `json:"queries"`
		Debug      bool           `json:"debug"`
		OnDegraded string         `json:"on_degraded"`
	}
	predictQuery struct {
		ID         string         `json:"id"`
		Model      string         `json:"model"`
		Context    entityMap      `json:"context"`
		Features   map[string]any `json:"features"`
		Candidates []candidate    `json:"candidates"`
		Debug      bool           `json:"debug"`
		OnDegraded string         `json:"on_degraded"`
	}
	featuresRequest struct {
		Queries    []featuresQuery `json:"queries"`
		OnDegraded string          `json:"on_degraded"`
	}
	featuresQuery struct {
		ID         string      `json:"id"`
		Features   []string    `json:"features"`
		Context    entityMap   `json:"context"`
		Candidates []candidate `json:"candidates"`
		OnDegraded string      `json:"on_degraded"`
	}
	candidate struct {
		ID       string         `json:"id"`
		Entities entityMap      `json:"entities"`
		Features map[string]any `json:"features"`
	}
)

// entityMap maps entity types to ids; an id may be written as a JSON string
// or integer.
type entityMap map[string]string

var integerText = regexp.MustCompile(`^-?[0-9]+$`)

// UnmarshalJSON decodes entity ids given as strings or integers.
func (m *entityMap) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("entities: want an object of entity type to id")
	}
	out := make(entityMap, len(raw))
	for k, v := range raw {
		var s string
		switch {
		case len(v) > 0 && v[0] == '"':
			if err := json.Unmarshal(v, &s); err != nil || s == "" {
				return fmt.Errorf("entity %s: want a non-empty id", k)
			}
		case integerText.Match(v):
			s = string(v)
		default:
			return fmt.Errorf("entity %s: want a string or integer id, got %s", k, truncateText(string(v), 40))
		}
		if err := features.CheckID(s); err != nil {
			return fmt.Errorf("entity %s: %v", k, err)
		}
		out[k] = s
	}
	*m = out
	return nil
}

// decodeJSON decodes a request body strictly: malformed JSON, unknown fields
// and trailing data are errors that say where they are. Numbers stay exact
// (json.Number).
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("%s", describeJSONError(err))
	}
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) > 0 {
		return badRequest("body: data after the JSON object")
	}
	return nil
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("body: malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return fmt.Sprintf("%s: want %s, got JSON %s", field, typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return "body: empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "body: malformed JSON: unexpected end"
	}
	return "body: " + err.Error()
}

// buildQuery turns a decoded query into a features.Query, converting request
// features to their inputs' types. Features the plan does not read are
// ignored; a null value counts as not given.
func buildQuery(p *features.Plan, where string, ctx entityMap, feats map[string]any, cands []candidate) (features.Query, error) {
	q := features.Query{Context: ctx}
	var err error
	if q.Features, err = typedFeatures(p, where+".features", feats); err != nil {
		return q, err
	}
	if len(cands) > 0 {
		q.Candidates = make([]features.Candidate, len(cands))
		for i := range cands {
			c := &q.Candidates[i]
			c.Entities = cands[i].Entities
			w := fmt.Sprintf("%s.candidates[%d].features", where, i)
			if c.Features, err = typedFeatures(p, w, cands[i].Features); err != nil {
				return q, err
			}
		}
	}
	return q, nil
}

func typedFeatures(p *features.Plan, where string, raw map[string]any) (map[string]features.Value, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	out := make(map[string]features.Value, len(raw))
	for name, x := range raw {
		k := p.Input(name)
		if k < 0 || x == nil {
			continue
		}
		v, err := features.Coerce(p.Inputs[k].Type, x)
		if err != nil {
			return nil, badRequest("%s.%s: %v", where, name, err)
		}
		out[name] = v
	}
	return out, nil
}

// The answers as encoding/json wrote them.
type (
	refQueryResult struct {
		ID             string                     `json:"id,omitempty"`
		Model          string                     `json:"model"`
		Version        string                     `json:"version"`
		Scores         refScores                  `json:"scores"`
		Degraded       bool                       `json:"degraded,omitempty"`
		DegradedValues int                        `json:"degraded_values,omitempty"`
		DegradedStores []string                   `json:"degraded_stores,omitempty"`
		Debug          []map[string]features.Cell `json:"debug,omitempty"`
	}
	refFeaturesResult struct {
		ID             string                     `json:"id,omitempty"`
		Rows           []map[string]features.Cell `json:"rows"`
		Degraded       bool                       `json:"degraded,omitempty"`
		DegradedValues int                        `json:"degraded_values,omitempty"`
		DegradedStores []string                   `json:"degraded_stores,omitempty"`
	}
)

// cellRows splits a row-major slice of cells into one map per row.
func cellRows(p *features.Plan, cells []features.Cell) []map[string]features.Cell {
	ni := len(p.Inputs)
	out := make([]map[string]features.Cell, len(cells)/ni)
	for r := range out {
		m := make(map[string]features.Cell, ni)
		for k, in := range p.Inputs {
			m[in.Name] = cells[r*ni+k]
		}
		out[r] = m
	}
	return out
}

// refScores is how scores were written: strconv's shortest 'g' form.
type refScores struct {
	vals  []float64
	width int
}

func (s refScores) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(s.vals)*21)
	b = append(b, '[')
	for i, v := range s.vals {
		if i > 0 {
			b = append(b, ',')
		}
		if s.width > 1 && i%s.width == 0 {
			if i > 0 {
				b[len(b)-1] = ']'
				b = append(b, ',')
			}
			b = append(b, '[')
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			b = append(b, "null"...)
		} else {
			b = strconv.AppendFloat(b, v, 'g', -1, 64)
		}
	}
	if s.width > 1 && len(s.vals) > 0 {
		b = append(b, ']')
	}
	return append(b, ']'), nil
}
