package models

import (
	"errors"
	"math"
	"strconv"
)

// JSON scalars that refuse null. encoding/json leaves a Go float64, int or
// bool untouched when it meets null, so "value": [1, null] would silently
// read as [1, 0]; these types make it an error.
type (
	jsonFloat     float64 // a number
	jsonThreshold float64 // a number, or the string "inf" or "-inf"
	jsonInt       int32   // an integer that fits in int32
	jsonBool      bool    // true or false
)

var errJSONNull = errors.New("null where a value is required")

func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	v, err := parseJSONNumber(b)
	*f = jsonFloat(v)
	return err
}

func (t *jsonThreshold) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"inf"`:
		*t = jsonThreshold(math.Inf(1))
		return nil
	case `"-inf"`:
		*t = jsonThreshold(math.Inf(-1))
		return nil
	}
	v, err := parseJSONNumber(b)
	*t = jsonThreshold(v)
	return err
}

func (n *jsonInt) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return errJSONNull
	}
	v, err := strconv.ParseInt(string(b), 10, 32)
	if err != nil {
		return errors.New("want an integer that fits in 32 bits, got " + abbrev(b))
	}
	*n = jsonInt(v)
	return nil
}

func (v *jsonBool) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true":
		*v = true
	case "false":
		*v = false
	default:
		return errors.New("want true or false, got " + abbrev(b))
	}
	return nil
}

func parseJSONNumber(b []byte) (float64, error) {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		if string(b) == "null" {
			return 0, errJSONNull
		}
		return 0, errors.New("want a number, got " + abbrev(b))
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, errors.New("number " + abbrev(b) + " is out of range")
	}
	return v, nil
}

func abbrev(b []byte) string {
	if len(b) > 24 {
		return string(b[:24]) + "..."
	}
	return string(b)
}

func floats(in []jsonFloat) []float64 {
	out := make([]float64, len(in))
	for i, v := range in {
		out[i] = float64(v)
	}
	return out
}
