package features

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckID(t *testing.T) {
	for _, id := range []string{"1", "-17", "1426727", "store-9", "a b", "ü", "日本", "x/y", "a_b.c", "a@b", strings.Repeat("x", MaxIDSize)} {
		if err := CheckID(id); err != nil {
			t.Errorf("CheckID(%q) = %v, want nil", id, err)
		}
	}
	for id, want := range map[string]string{
		"":                             "empty",
		strings.Repeat("x", 1025):      "1025 bytes is over the limit of 1024",
		"a\nb":                         "control byte 0x0a at byte 1",
		"a\x00":                        "control byte 0x00",
		"\x7f":                         "control byte 0x7f",
		"{1}":                          "braces",
		"a}":                           "braces",
		"1:2":                          "':' at byte 1",
		"\xff":                         "not valid UTF-8",
		strings.Repeat("é", 600) + "x": "over the limit",
	} {
		err := CheckID(id)
		if !errors.Is(err, ErrID) || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckID(%.20q) = %v, want an error wrapping ErrID containing %q", id, err, want)
		}
	}
}

// TestUploadRefusesBadIDs: an upload file's bad id is refused with its
// file and line.
func TestUploadRefusesBadIDs(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	for _, tt := range []struct{ name, format, data, want string }{
		{"s.csv", FormatCSV, "id,store_orders\n1,2\n\"a{b}\",3\n", "s.csv:3: column id: bad entity id: '{' at byte 1"},
		{"s.csv", FormatCSV, "id,store_orders\n\"x:y\",3\n", "s.csv:2: column id: bad entity id: ':' at byte 1"},
		{"s.jsonl", FormatJSONL, "{\"id\": 1}\n{\"id\": \"a\\tb\"}\n", "s.jsonl:2: column id: bad entity id: control byte 0x09 at byte 1"},
	} {
		_, err := readTable(t, c, tt.name, tt.format, tt.data)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) || !errors.Is(err, ErrID) {
			t.Errorf("%s %q: got %v, want %q", tt.name, tt.data, err, tt.want)
		}
	}
}

// TestCatalogRefusesTemplatesThatMeet: two entity types whose keys could be
// the same key for some ids are refused; templates kept apart by a byte an
// id cannot hold are not.
func TestCatalogRefusesTemplatesThatMeet(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		meet bool
	}{
		{"st_{id}", "cx_{id}", false},
		{"a_{id}", "a_b_{id}", true},     // a's "b_1" is b's "1"
		{"{id}_x", "{id}_y_x", true},     // a's "1_y" is b's "1"
		{"{id}", "st_{id}", true},        // the bare id "st_1"
		{"k_{id}", "k_{id}", true},       // the same template
		{"a_{id}_z", "a_b_{id}", true},   // a's "b_1" gives a_b_1_z, b's "1_z" too
		{"a:{id}", "a:b:{id}", false},    // b's extra "b:" holds a ':'
		{"cx:{id}", "{id}:cx", false},    // cx:1:cx would need ids with ':'
		{"u{{id}}", "u{{id}}:v2", false}, // the suffix beyond holds ':'
		{"st_{id}", "st_{id}_v2", true},  // a's "1_v2" is b's "1"
		{"st_{id}", "st_{id}:v2", false}, // an id cannot end in ":v2"
		{"{id}", "{id}", true},
	} {
		cat := "entities:\n  a: {key: \"" + tt.a + "\"}\n  b: {key: \"" + tt.b + "\"}\nfeatures: []\n"
		_, err := ParseCatalog([]byte(cat), nil)
		switch {
		case tt.meet && (err == nil || !strings.Contains(err.Error(), "can be the same key")):
			t.Errorf("%q and %q: got %v, want a refusal", tt.a, tt.b, err)
		case !tt.meet && err != nil:
			t.Errorf("%q and %q: %v", tt.a, tt.b, err)
		}
	}
}
