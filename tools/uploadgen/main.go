// Command uploadgen writes the data of tools/bench_upload.sh: a catalog of
// F float features of one entity type, the same R rows as CSV, JSON Lines
// and Parquet (snappy pages, row groups of 100,000 rows, as Spark writes
// them), and the HSET commands that load exactly the hashes `seer upload`
// writes into a fresh Redis (its first generation, -gen), in the Redis
// protocol that `redis-cli --pipe` reads. The fields and values are
// encoded from docs/format.md here, independently of seer's code, so that
// the floor they measure is Redis's own.
//
//	go run ./tools/uploadgen -rows 200000 -features 30 -dir /tmp/upload
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/seer-ml/seer/internal/parquettest"
)

func main() {
	rows := flag.Int("rows", 200000, "rows (entities)")
	nf := flag.Int("features", 30, "float features per row")
	dir := flag.String("dir", ".", "directory to write into")
	stamp := flag.Int64("stamp", 1700000000, "unix seconds every value of the HSET commands is stamped with")
	gen := flag.Uint64("gen", 1, "generation the HSET commands write (seer's first upload into a fresh Redis writes 1)")
	flag.Parse()
	if *gen >= 1<<31 {
		fmt.Fprintln(os.Stderr, "uploadgen: -gen is at most 2147483647")
		os.Exit(2)
	}
	if err := run(*dir, *rows, *nf, *stamp, *gen); err != nil {
		fmt.Fprintln(os.Stderr, "uploadgen:", err)
		os.Exit(1)
	}
}

func run(dir string, rows, nf int, stamp int64, gen uint64) error {
	names := make([]string, nf)
	fields := make([]string, nf)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i)
		// docs/format.md: field(id, g) = decimal(g * 2^32 + id).
		fields[i] = strconv.FormatUint(gen<<32|xxhash.Sum64String(names[i])&0xffffffff, 10)
	}
	files := map[string]*bufio.Writer{}
	var closers []*os.File
	for _, name := range []string{"catalog.yaml", "data.csv", "data.jsonl", "data.resp"} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		closers = append(closers, f)
		files[name] = bufio.NewWriterSize(f, 1<<20)
	}
	cat := files["catalog.yaml"]
	fmt.Fprintln(cat, "entities: {store: {key: \"st_{id}\"}}")
	fmt.Fprintln(cat, "features:")
	for _, n := range names {
		fmt.Fprintf(cat, "  - {name: %s, entity: store, type: float, store: main}\n", n)
	}
	csv, jsonl, resp := files["data.csv"], files["data.jsonl"], files["data.resp"]
	pf, err := os.Create(filepath.Join(dir, "data.parquet"))
	if err != nil {
		return err
	}
	cols := []parquettest.Column{{Name: "id", Type: "int64"}}
	for _, n := range names {
		cols = append(cols, parquettest.Column{Name: n, Type: "double"})
	}
	pbuf := bufio.NewWriterSize(pf, 1<<20)
	pq, err := parquettest.NewWriter(pbuf, cols, parquettest.Options{RowGroupRows: 100000})
	if err != nil {
		return err
	}
	prow := make([]any, 1+nf)
	csv.WriteString("id")
	for _, n := range names {
		csv.WriteString("," + n)
	}
	csv.WriteString("\n")

	rng := rand.New(rand.NewPCG(1, 2))
	var num []byte
	value := make([]byte, 0, 32)
	for r := range rows {
		id := strconv.Itoa(r + 1)
		key := "st_" + id
		csv.WriteString(id)
		jsonl.WriteString(`{"id":` + id)
		prow[0] = int64(r + 1)
		fmt.Fprintf(resp, "*%d\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n", 2+2*nf, len(key), key)
		for i := range nf {
			// Four decimals, as batch jobs usually write them.
			x := math.Round(rng.NormFloat64()*1e6) / 1e4
			prow[1+i] = x
			num = strconv.AppendFloat(num[:0], x, 'f', -1, 64)
			csv.WriteByte(',')
			csv.Write(num)
			jsonl.WriteString(`,"` + names[i] + `":`)
			jsonl.Write(num)
			// docs/format.md: header 0x41 (float, stamped), uvarint
			// stamp, 8 bytes little-endian.
			value = append(value[:0], 0x41)
			value = binary.AppendUvarint(value, uint64(stamp))
			value = binary.LittleEndian.AppendUint64(value, math.Float64bits(x))
			fmt.Fprintf(resp, "$%d\r\n%s\r\n$%d\r\n", len(fields[i]), fields[i], len(value))
			resp.Write(value)
			resp.WriteString("\r\n")
		}
		csv.WriteByte('\n')
		jsonl.WriteString("}\n")
		if err := pq.WriteRow(prow); err != nil {
			return err
		}
	}
	if err := pq.Close(); err != nil {
		return err
	}
	if err := pbuf.Flush(); err != nil {
		return err
	}
	if err := pf.Close(); err != nil {
		return err
	}
	for _, w := range files {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	for _, f := range closers {
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}
