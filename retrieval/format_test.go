package retrieval

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/redistest"
)

// python is the interpreter with Debian's redis, xxhash and snappy modules.
const python = "/usr/bin/python3"

// needPython fails the test under CI when python3 or its modules are
// missing, and skips it loudly elsewhere.
func needPython(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import redis, snappy, xxhash").CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("PYTHON MODULES MISSING: %s with redis, snappy and xxhash (apt install python3-redis python3-snappy python3-xxhash): %v %s", python, err, out)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// exampleReport is what tools/write_example.py prints.
type exampleReport struct {
	Entities map[string]string `json:"entities"`
	Features []struct {
		Name, Entity, Type, Field string
	} `json:"features"`
	Values []struct {
		Key, Feature, Field, Type string
		Value                     json.RawMessage
		Stamp                     *int64
		Raw                       string
	} `json:"values"`
	Markers map[string]int64 `json:"markers"`
}

// TestPythonWriter runs the independent Python implementation of
// docs/format.md against a real Redis and checks that seer reads every
// value it wrote.
func TestPythonWriter(t *testing.T) {
	needPython(t)
	srv := redistest.Start(t)
	const now = 1700000000
	script := filepath.Join("..", "tools", "write_example.py")
	cmd := exec.Command(python, script, "--addr", srv.Addr, "--now", fmt.Sprint(now))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.Bytes())
	}
	var rep exampleReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if len(rep.Values) < 10 {
		t.Fatalf("the script wrote only %d values", len(rep.Values))
	}

	// A catalog of the script's features: field ids must agree.
	var y strings.Builder
	y.WriteString("entities:\n")
	for name, key := range rep.Entities {
		fmt.Fprintf(&y, "  %s: {key: %q}\n", name, key)
	}
	y.WriteString("features:\n")
	for _, f := range rep.Features {
		fmt.Fprintf(&y, "  - {name: %s, entity: %s, type: %s, store: main, max_age: 48h}\n", f.Name, f.Entity, f.Type)
	}
	c, err := features.ParseCatalog([]byte(y.String()), []string{"main"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Features {
		if got := c.Spec(f.Name).Field; got != f.Field {
			t.Errorf("field of %s: seer %s, Python %s", f.Name, got, f.Field)
		}
	}

	ctx := context.Background()
	client := srv.Client()
	compressed := 0
	for _, v := range rep.Values {
		spec := c.Spec(v.Feature)
		raw, err := client.HGet(ctx, v.Key, spec.Field).Bytes()
		if err != nil {
			t.Errorf("%s %s: %v", v.Key, v.Feature, err)
			continue
		}
		if hex.EncodeToString(raw) != v.Raw {
			t.Errorf("%s %s: Redis holds %x, the script wrote %s", v.Key, v.Feature, raw, v.Raw)
		}
		got, stamp, err := features.DecodeStamped(raw)
		if err != nil {
			t.Errorf("%s %s: decode %x: %v", v.Key, v.Feature, raw, err)
			continue
		}
		want := jsonValue(t, spec.Type, v.Value)
		if !got.Equal(want) {
			t.Errorf("%s %s: seer reads %.80v, the script wrote %.80v", v.Key, v.Feature, got, want)
		}
		var wantStamp int64
		if v.Stamp != nil {
			wantStamp = *v.Stamp
		}
		if stamp != wantStamp {
			t.Errorf("%s %s: stamp %d, want %d", v.Key, v.Feature, stamp, wantStamp)
		}
		if raw[0]&0x80 != 0 {
			compressed++
		} else if enc := encodeLike(got, v.Stamp); !bytes.Equal(enc, raw) {
			// Without compression the encoding is canonical: seer writes
			// the same bytes.
			t.Errorf("%s %s: seer encodes % x, the script % x", v.Key, v.Feature, enc, raw)
		}
	}
	if compressed < 3 {
		t.Errorf("only %d values were snappy-compressed; the example should exercise compression", compressed)
	}

	// Through the retrieval path, with markers.
	st, err := Open(ctx, "main", Config{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New([]*Store{st}, Options{})
	var lookups []features.Lookup
	for _, v := range rep.Values {
		lookups = append(lookups, features.NewLookup("main", v.Key, []*features.Spec{c.Spec(v.Feature)}))
	}
	// The script's stamps are from `now`; judge max ages from then, not
	// from the wall clock.
	fetchCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if degraded := r.Fetch(fetchCtx, lookups); len(degraded) > 0 {
		t.Fatalf("degraded %v", degraded)
	}
	for i, l := range lookups {
		v := rep.Values[i]
		stale := v.Stamp != nil
		if got := l.Got[0].Found(); got == stale {
			t.Errorf("%s %s: valid %v; stamped values of 2023 are older than 48h and unstamped ones never expire", v.Key, v.Feature, got)
		}
	}
	markers, err := st.Markers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[uint32]int64)
	for field, version := range rep.Markers {
		var id uint32
		fmt.Sscan(field, &id)
		want[id] = version
	}
	if diff := cmp.Diff(want, markers); diff != "" {
		t.Errorf("markers (-want +got):\n%s", diff)
	}
	if len(markers) != len(rep.Features) {
		t.Errorf("%d markers for %d features", len(markers), len(rep.Features))
	}
}

func jsonValue(t *testing.T, typ features.Type, raw json.RawMessage) features.Value {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		t.Fatal(err)
	}
	v, err := features.Coerce(typ, x)
	if err != nil {
		t.Fatalf("value %s: %v", raw, err)
	}
	return v
}

func encodeLike(v features.Value, stamp *int64) []byte {
	if stamp == nil {
		return features.Encode(nil, v)
	}
	return features.EncodeStamped(nil, v, *stamp)
}
