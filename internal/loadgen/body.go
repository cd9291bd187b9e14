package loadgen

import "fmt"

// Body is the part of a /v1/predict body that names each query's model and
// entities, as the load tools read it to build their own requests.
type Body struct {
	Queries []Query `json:"queries"`
}

// Query is a query of a Body.
type Query struct {
	Model      string         `json:"model"`
	Features   []string       `json:"features"` // of a /v1/features body
	Context    map[string]any `json:"context"`
	Candidates []struct {
		Entities map[string]any `json:"entities"`
	} `json:"candidates"`
}

// IDs returns the entity ids of m as strings: a body may give them as
// strings or as integers.
func IDs(m map[string]any) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}
