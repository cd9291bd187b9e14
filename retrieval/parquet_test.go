package retrieval

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/parquettest"
)

// sparkTable writes a table as Spark does: part files of snappy Parquet,
// their .crc checksums and _SUCCESS, in a directory.
func sparkTable(t *testing.T, parts [][][]any, cols []parquettest.Column) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "stores")
	for i, rows := range parts {
		name := "part-0000" + strconv.Itoa(i) + "-5f6c0a1e-7d1b-4c4e-9a43-0b3f3c9d2e11-c000.snappy.parquet"
		if err := parquettest.WriteFile(filepath.Join(dir, name), cols, rows, parquettest.Options{RowGroupRows: 7}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "."+name+".crc"), []byte("crc"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "_SUCCESS"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestUploadParquet uploads a Spark-like directory of Parquet part files
// of every feature type and reads the values back.
func TestUploadParquet(t *testing.T) {
	c := testCatalogParse(t)
	main, _ := openStore(t, "main", ModeStandalone)
	search, _ := openStore(t, "search", ModeStandalone)
	r := New([]*Store{main, search}, Options{})
	cols := []parquettest.Column{
		{Name: "id", Type: "int64"},
		{Name: "store_rating", Type: "double"},
		{Name: "store_orders", Type: "int32"},
		{Name: "store_open", Type: "bool"},
		{Name: "store_cuisine", Type: "string"},
		{Name: "store_embedding", Type: "list<float>"},
		{Name: "store_tags", Type: "list<string>"},
	}
	var parts [][][]any
	for p := range 3 {
		var rows [][]any
		for i := range 20 {
			id := int64(p*20 + i + 1)
			row := []any{id, float64(id) + 0.5, int32(id * 10), id%2 == 0, "c" + strconv.Itoa(int(id)), []float32{float32(id), -1}, []string{"t", strconv.Itoa(int(id))}}
			if id%7 == 0 {
				row[1], row[4], row[5] = nil, nil, nil // null cells: no values
			}
			rows = append(rows, row)
		}
		parts = append(parts, rows)
	}
	dir := sparkTable(t, parts, cols)
	ctx := context.Background()
	// A dry run reads everything and writes nothing.
	stats, err := r.UploadFile(ctx, c, "store", dir, UploadOptions{DryRun: true})
	if err != nil || stats.Files != 3 || stats.Rows != 60 || stats.Values != 60*6-8*3 {
		t.Fatalf("dry run: %+v, %v", stats, err)
	}
	if n, _ := main.client.DBSize(ctx).Result(); n != 0 {
		t.Fatalf("a dry run wrote %d keys", n)
	}
	stats, err = r.UploadFile(ctx, c, "store", dir, UploadOptions{})
	if err != nil || stats.Rows != 60 || len(stats.PerFile) != 3 || stats.PerFile[2].Rows != 20 {
		t.Fatalf("upload: %+v, %v", stats, err)
	}
	ids := make([]string, 60)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	names := []string{"store_rating", "store_orders", "store_open", "store_cuisine", "store_embedding", "store_tags"}
	rows, degraded := fetchAll(t, r, c, ids, names, 5*time.Second)
	if len(degraded) > 0 {
		t.Fatalf("degraded %v", degraded)
	}
	for i, row := range rows {
		id := i + 1
		want := []features.Value{
			features.FloatValue(float64(id) + 0.5), features.IntValue(int64(id * 10)), features.BoolValue(id%2 == 0),
			features.StringValue("c" + strconv.Itoa(id)), features.VectorValue([]float32{float32(id), -1}),
			features.ListValue([]string{"t", strconv.Itoa(id)}),
		}
		if id%7 == 0 {
			want[0], want[3], want[4] = features.FloatValue(4), features.Value{}, features.Value{}
		}
		var got []features.Value
		for _, cell := range row {
			got = append(got, cell.Value)
		}
		if diff := cmp.Diff(want, got, valueComparer); diff != "" {
			t.Errorf("store %d (-want +got):\n%s", id, diff)
		}
	}
}

// TestPartFiles checks how directories are expanded and what is refused.
func TestPartFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"t/part-00001.parquet", "t/part-00000.parquet", "t/_SUCCESS", "t/.part-00000.parquet.crc", "t/_committed_123"} {
		write(n)
	}
	got, err := PartFiles([]string{filepath.Join(dir, "t"), filepath.Join(dir, "t", "part-00000.parquet")})
	want := []string{"t/part-00000.parquet", "t/part-00001.parquet", "t/part-00000.parquet"}
	for i := range got {
		got[i] = strings.TrimPrefix(got[i], dir+"/")
	}
	if err != nil || !cmp.Equal(got, want) {
		t.Errorf("PartFiles = %v, %v; want %v", got, err, want)
	}
	for _, tt := range []struct {
		files []string
		want  string
	}{
		{[]string{"a/part-0.parquet", "a/notes.txt"}, "unknown format"},
		{[]string{"b/_temporary/x"}, "has not finished"},
		{[]string{"c/country=fr/part-0.parquet"}, "partitioned tables are not supported"},
		{[]string{"d/_SUCCESS"}, "no part files"},
	} {
		for _, f := range tt.files {
			write(f)
		}
		d := filepath.Join(dir, strings.SplitN(tt.files[0], "/", 2)[0])
		if _, err := PartFiles([]string{d}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v, want an error containing %q", tt.files, err, tt.want)
		}
	}
	if _, err := PartFiles([]string{filepath.Join(dir, "missing.csv")}); !os.IsNotExist(err) {
		t.Errorf("a missing file: %v", err)
	}
}
