package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/retrieval"
)

// runSimulate replays a trace of feature reads through caches of several
// sizes and prints the hit-rate curve, as an estimate before a rollout.
func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("simulate", stdout)
	sizesFlag := fs.String("sizes", "1000,10000,100000", "cache sizes in entries (one entry per entity key and set of features), comma-separated; k and m suffixes")
	points := fs.Int("points", 20, "points of the curve: the trace is cut into this many windows of equal reads")
	cumulative := fs.Bool("cumulative", false, "print the hit rate from the start of the trace instead of within each window")
	store := fs.String("store", "main", "store name of reads from redis-cli MONITOR output")
	zipf := fs.String("zipf", "", "N,S: replay a generated trace of N keys with Zipf exponent S instead of files")
	reads := fs.Int("reads", 0, "reads of a generated trace (default 10 per key)")
	rate := fs.Float64("rate", 1000, "reads per second of a generated trace")
	nfields := fs.Int("fields", 15, "features per read of a generated trace")
	seed := fs.Uint64("seed", 1, "seed of a generated trace")
	write := fs.String("write", "", "also write the generated trace to FILE, as JSON lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sizes, err := parseSizes(*sizesFlag)
	if err != nil {
		return usagef("--sizes: %v", err)
	}
	var trace []retrieval.SimRead
	add := func(r retrieval.TraceRecord) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		trace = append(trace, retrieval.SimRead{Key: retrieval.SimKey(r), Time: r.Time.UnixNano()})
		return nil
	}
	switch {
	case *zipf != "" && fs.NArg() > 0:
		return usagef("simulate takes --zipf or trace files, not both")
	case *zipf != "":
		if err := generate(*zipf, *reads, *rate, *nfields, *seed, *write, add); err != nil {
			return err
		}
	case fs.NArg() == 0:
		return usagef("simulate needs trace files (JSON lines or redis-cli MONITOR output, - for stdin) or --zipf N,S")
	default:
		for _, path := range fs.Args() {
			if err := readTraceFile(path, *store, add); err != nil {
				return err
			}
		}
	}
	sim, err := retrieval.Simulate(trace, sizes, *points)
	if err != nil {
		return err
	}
	printSimulation(stdout, sim, *cumulative)
	return nil
}

// generate makes a Zipf trace, optionally writing it to a file.
func generate(spec string, reads int, rate float64, nfields int, seed uint64, write string, add func(retrieval.TraceRecord) error) error {
	ns, ss, ok := strings.Cut(spec, ",")
	n, err1 := strconv.Atoi(ns)
	s, err2 := strconv.ParseFloat(ss, 64)
	if !ok || err1 != nil || err2 != nil {
		return usagef("--zipf %q: want N,S such as 100000,1.1", spec)
	}
	if reads == 0 {
		reads = 10 * n
	}
	if nfields <= 0 || nfields > 1000 {
		return usagef("--fields %d: want 1 to 1000", nfields)
	}
	fields := make([]string, nfields)
	for i := range fields {
		fields[i] = features.Field("store_f" + strconv.Itoa(i))
	}
	emit := add
	var w *bufio.Writer
	if write != "" {
		f, err := os.Create(write)
		if err != nil {
			return fmt.Errorf("simulate: %w", err)
		}
		defer f.Close()
		w = bufio.NewWriter(f)
		enc := json.NewEncoder(w)
		emit = func(r retrieval.TraceRecord) error {
			if err := enc.Encode(r); err != nil {
				return err
			}
			return add(r)
		}
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := retrieval.ZipfTrace(n, s, reads, rate, seed, start, fields, emit); err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	if w != nil {
		if err := w.Flush(); err != nil {
			return fmt.Errorf("simulate: write %s: %w", write, err)
		}
	}
	return nil
}

func readTraceFile(path, store string, add func(retrieval.TraceRecord) error) error {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("simulate: %w", err)
		}
		defer f.Close()
		r = f
	}
	if err := retrieval.ReadTrace(r, store, add); err != nil {
		return fmt.Errorf("simulate: %s: %w", path, err)
	}
	return nil
}

// parseSizes parses a list such as "1000,10k,1m".
func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, part := range strings.Split(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		mult := 1
		switch {
		case strings.HasSuffix(part, "k"):
			mult, part = 1000, strings.TrimSuffix(part, "k")
		case strings.HasSuffix(part, "m"):
			mult, part = 1_000_000, strings.TrimSuffix(part, "m")
		}
		n, err := strconv.Atoi(part)
		if err != nil || n <= 0 || n > 1<<31/mult {
			return nil, fmt.Errorf("bad size %q", part)
		}
		sizes = append(sizes, n*mult)
	}
	if len(sizes) == 0 {
		return nil, errors.New("no sizes")
	}
	return sizes, nil
}

// printSimulation prints the curve as a table: a row per window, a column
// per cache size, and "all" for a cache that never evicts.
func printSimulation(w io.Writer, sim retrieval.Simulation, cumulative bool) {
	fmt.Fprintf(w, "%d reads of %d keys; hit rate ", sim.Reads, sim.Keys)
	if cumulative {
		fmt.Fprintln(w, "from the start of the trace, by cache size in entries")
	} else {
		fmt.Fprintln(w, "within each window, by cache size in entries")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "reads\telapsed\t")
	for _, n := range sim.Sizes {
		fmt.Fprintf(tw, "%d\t", n)
	}
	fmt.Fprintln(tw, "all\t")
	for _, p := range sim.Points {
		elapsed := p.Time.Sub(sim.Start)
		if elapsed >= 10*time.Second {
			elapsed = elapsed.Round(time.Second)
		} else {
			elapsed = elapsed.Round(time.Millisecond)
		}
		fmt.Fprintf(tw, "%d\t%s\t", p.Reads, elapsed)
		rates, ideal := p.Window, p.Ideal
		if cumulative {
			rates, ideal = p.Total, p.IdealTotal
		}
		for _, h := range rates {
			fmt.Fprintf(tw, "%.3f\t", h)
		}
		fmt.Fprintf(tw, "%.3f\t\n", ideal)
	}
	fmt.Fprint(tw, "total\t\t")
	for _, h := range sim.HitRates {
		fmt.Fprintf(tw, "%.3f\t", h)
	}
	fmt.Fprintf(tw, "%.3f\t\n", sim.Ideal)
	tw.Flush()
}
