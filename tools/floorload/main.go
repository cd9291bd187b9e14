// Command floorload measures seer against the floor of issue 9: a plain
// go-redis client that pipelines exactly the HMGETs seer sends for a query
// and decodes every value (internal/floor). It alternates rounds of the
// floor and of seer's HTTP API at each concurrency, c workers in a closed
// loop, and prints each round's request rate, latency percentiles and CPU
// time per request (all of it, and the part in user space), then the
// medians and seer's ratios to the floor.
//
//	floorload -redis 127.0.0.1:6379 -catalog catalog.yaml -manifest manifest.yaml \
//	    -url http://127.0.0.1:8080 -pid $(pgrep -f 'seer serve') -body body.json -c 1,8 -d 10s -rounds 3
//
// The floor's CPU time is this process's own while it reads (the client
// is the thing measured); seer's is the seer process's (-pid, from
// /proc/PID/stat), without this process's HTTP client. Redis's CPU is in
// neither. The HMGETs are the ones seer's plan makes of the body's first
// query: the catalog and the manifest's inputs compiled as seer compiles
// them. With -floor=false only seer is driven, at -path (for
// /v1/features). With -old-url and -old-pid, a second seer (an older
// build over the same Redis) takes its turn after the floor in each round.
// With -log, every request to seer is logged with its start and outcome
// (for a timeline of degraded answers around a fault). With -metrics, each
// seer round also reports the allocations and bytes
// the serving process made per request (Go's memstats from its /metrics,
// everything the process did meanwhile included). With -redis-pid (and
// -old-redis-pid for the older build's own Redis), each seer round also
// reports the CPU time the Redis process spent per request. Used by
// tools/bench_floor.sh; docs/performance.md has the figures.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/floor"
	"github.com/seer-ml/seer/internal/loadgen"
	"github.com/seer-ml/seer/models"
	"github.com/seer-ml/seer/retrieval"
)

// floorQuery returns the HMGETs seer's plan makes of the body's first
// query.
func floorQuery(catalogPath, manifestPath string, raw []byte) (floor.Query, error) {
	data, err := os.ReadFile(catalogPath)
	if err != nil {
		return floor.Query{}, err
	}
	cat, err := features.ParseCatalog(data, nil)
	if err != nil {
		return floor.Query{}, err
	}
	if data, err = os.ReadFile(manifestPath); err != nil {
		return floor.Query{}, err
	}
	m, err := models.ParseManifest(data)
	if err != nil {
		return floor.Query{}, err
	}
	p, err := features.Compile(cat, m.Inputs)
	if err != nil {
		return floor.Query{}, err
	}
	var b loadgen.Body
	if err := json.Unmarshal(raw, &b); err != nil || len(b.Queries) == 0 {
		return floor.Query{}, fmt.Errorf("body: no query (%v)", err)
	}
	q := &features.Query{Context: loadgen.IDs(b.Queries[0].Context)}
	for _, c := range b.Queries[0].Candidates {
		q.Candidates = append(q.Candidates, features.Candidate{Entities: loadgen.IDs(c.Entities)})
	}
	var batch features.Batch
	if err := p.Prepare(q, &batch); err != nil {
		return floor.Query{}, err
	}
	return floor.FromLookups(batch.Lookups), nil
}

// served points the query's fields at the generations Redis serves: a
// feature that `seer upload` wrote is read from its current generation's
// field (retrieval.GenField), as seer reads it, not from its field id.
func served(ctx context.Context, c *redis.Client, q *floor.Query) error {
	gens, err := c.HGetAll(ctx, retrieval.GenerationsKey).Result()
	if err != nil {
		return fmt.Errorf("read the generations: %w", err)
	}
	for _, fields := range q.Fields {
		for k, f := range fields {
			rec, ok := gens[f]
			if !ok {
				continue // never uploaded with generations: generation 0
			}
			var fg retrieval.FeatureGenerations
			id, err := strconv.ParseUint(f, 10, 32)
			if err == nil {
				err = json.Unmarshal([]byte(rec), &fg)
			}
			if err != nil {
				return fmt.Errorf("the generation of field %s: %w", f, err)
			}
			fields[k] = retrieval.GenField(uint32(id), fg.Current.Gen)
		}
	}
	return nil
}

// fieldCount returns how many values the query reads.
func fieldCount(q floor.Query) int {
	n := 0
	for _, fields := range q.Fields {
		n += len(fields)
	}
	return n
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "floorload: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	redisAddr := flag.String("redis", "", "the Redis seer reads (standalone)")
	catalog := flag.String("catalog", "", "seer's catalog")
	manifest := flag.String("manifest", "", "the model's manifest")
	url := flag.String("url", "", "seer's HTTP base URL")
	path := flag.String("path", "/v1/predict", "the route to POST the body to")
	bodyPath := flag.String("body", "", "a request body (JSON)")
	pid := flag.Int("pid", 0, "seer's process id, for its CPU time")
	oldURL := flag.String("old-url", "", "another seer (an older build) to drive in turn, its HTTP base URL")
	oldPid := flag.Int("old-pid", 0, "the other seer's process id")
	redisPid := flag.Int("redis-pid", 0, "the process id of the Redis seer reads, for its CPU time per request")
	oldRedisPid := flag.Int("old-redis-pid", 0, "the process id of the Redis the other seer reads, when not the same")
	concs := flag.String("c", "1,8", "concurrencies, comma-separated")
	dur := flag.Duration("d", 10*time.Second, "duration of each round")
	rounds := flag.Int("rounds", 3, "rounds at each concurrency, each the floor then seer")
	withFloor := flag.Bool("floor", true, "drive the floor beside seer")
	metrics := flag.Bool("metrics", false, "report seer's allocations per request, from its /metrics (Go's memstats)")
	logPath := flag.String("log", "", "write a line per seer request to this file: its start (unix ns), then ok, degraded or the error")
	flag.Parse()
	if *url == "" || *bodyPath == "" || *pid == 0 || (*withFloor && (*redisAddr == "" || *catalog == "" || *manifest == "")) {
		fmt.Fprintln(os.Stderr, "floorload: -url, -body and -pid are required, and -redis, -catalog and -manifest with the floor")
		os.Exit(2)
	}
	raw, err := os.ReadFile(*bodyPath)
	if err != nil {
		fail("%v", err)
	}
	var cs []int
	for _, s := range strings.Split(*concs, ",") {
		c, err := strconv.Atoi(s)
		if err != nil || c < 1 {
			fail("-c: bad concurrency %q", s)
		}
		cs = append(cs, c)
	}

	var floorDo func() error
	if *withFloor {
		q, err := floorQuery(*catalog, *manifest, raw)
		if err != nil {
			fail("%v", err)
		}
		client := redis.NewClient(&redis.Options{Addr: *redisAddr, Protocol: 2, DisableIdentity: true, PoolSize: 64})
		defer client.Close()
		if err := served(context.Background(), client, &q); err != nil {
			fail("%v", err)
		}
		values, err := q.Read(context.Background(), client)
		if err != nil {
			fail("%v", err)
		}
		if want := fieldCount(q); values != want {
			fail("the floor read %d values of %d: every value must be in Redis", values, want)
		}
		floorDo = func() error {
			n, err := q.Read(context.Background(), client)
			if err == nil && n != values {
				err = fmt.Errorf("read %d values, then %d", values, n)
			}
			return err
		}
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	post := func(base string) error {
		resp, err := hc.Post(base+*path, "application/json", bytes.NewReader(raw))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		switch {
		case err != nil:
			return err
		case resp.StatusCode != 200:
			return fmt.Errorf("status %d", resp.StatusCode)
		case bytes.Contains(data, []byte(`"degraded"`)):
			return fmt.Errorf("degraded")
		}
		return nil
	}
	seerDo := func() error { return post(*url) }
	if *logPath != "" {
		f, err := os.Create(*logPath)
		if err != nil {
			fail("%v", err)
		}
		defer f.Close()
		var mu sync.Mutex
		seerDo = func() error {
			start := time.Now()
			err := post(*url)
			what := "ok"
			if err != nil {
				what = err.Error()
			}
			mu.Lock()
			fmt.Fprintf(f, "%d %s\n", start.UnixNano(), what)
			mu.Unlock()
			return err
		}
	}
	if err := seerDo(); err != nil {
		fail("seer: %v", err)
	}
	var oldDo func() error
	if *oldURL != "" {
		oldDo = func() error { return post(*oldURL) }
		if err := oldDo(); err != nil {
			fail("old seer: %v", err)
		}
	}

	if *oldRedisPid == 0 {
		*oldRedisPid = *redisPid
	}
	fmt.Printf("%-5s %-3s %-5s %9s %8s %8s %9s %7s %6s %6s", "round", "c", "side", "req/s", "p50 ms", "p99 ms", "cpu µs", "user µs", "errors", "load")
	if *redisPid != 0 {
		fmt.Printf(" %9s", "redis µs")
	}
	fmt.Println()
	type key struct {
		c    int
		side string
	}
	rates, cpus, users, redisCPUs := map[key][]float64{}, map[key][]float64{}, map[key][]float64{}, map[key][]float64{}
	for _, c := range cs {
		// Warm both up.
		if floorDo != nil {
			loadgen.Run(c, time.Second, 0, "", floorDo)
		}
		loadgen.Run(c, time.Second, *pid, "", seerDo)
		if oldDo != nil {
			loadgen.Run(c, time.Second, *oldPid, "", oldDo)
		}
		for i := range *rounds {
			for _, side := range []struct {
				name  string
				pid   int
				redis int
				url   string
				do    func() error
			}{{"floor", 0, *redisPid, "", floorDo}, {"old", *oldPid, *oldRedisPid, *oldURL, oldDo}, {"seer", *pid, *redisPid, *url, seerDo}} {
				if side.do == nil {
					continue
				}
				var m string
				if *metrics && side.url != "" {
					m = side.url + "/metrics"
				}
				var redisBefore time.Duration
				if side.redis != 0 {
					redisBefore = loadgen.ProcCPU(side.redis)
				}
				r := loadgen.Run(c, *dur, side.pid, m, side.do)
				var redisCPU float64
				if side.redis != 0 && r.Total > 0 {
					redisCPU = float64((loadgen.ProcCPU(side.redis) - redisBefore).Microseconds()) / float64(r.Total)
				}
				load, _ := os.ReadFile("/proc/loadavg")
				var l1 string
				fmt.Sscan(string(load), &l1)
				fmt.Printf("%-5d %-3d %-5s %9.0f %8.2f %8.2f %9d %7d %6d %6s", i+1, c, side.name, r.Rate,
					float64(r.P50.Microseconds())/1000, float64(r.P99.Microseconds())/1000, r.CPU.Microseconds(), r.UserCPU.Microseconds(), r.Errors, l1)
				if side.redis != 0 {
					fmt.Printf(" %9.1f", redisCPU)
				}
				if m != "" {
					fmt.Printf("  %.0f allocs %.1f KiB", r.Allocs, r.Bytes/1024)
				}
				fmt.Println()
				k := key{c, side.name}
				rates[k] = append(rates[k], r.Rate)
				cpus[k] = append(cpus[k], float64(r.CPU.Microseconds()))
				users[k] = append(users[k], float64(r.UserCPU.Microseconds()))
				redisCPUs[k] = append(redisCPUs[k], redisCPU)
			}
		}
	}
	med := func(xs []float64) float64 { xs = slices.Clone(xs); slices.Sort(xs); return xs[len(xs)/2] }
	for _, c := range cs {
		s := key{c, "seer"}
		fmt.Printf("c=%d median: seer %.0f req/s, %.0f µs CPU per request\n", c, med(rates[s]), med(cpus[s]))
		if *redisPid != 0 {
			fmt.Printf("c=%d median: Redis %.1f µs CPU per seer request\n", c, med(redisCPUs[s]))
		}
		if oldDo != nil {
			o := key{c, "old"}
			fmt.Printf("c=%d median: old %.0f req/s, %.0f µs; seer/old: rate %.2f, CPU %.2f\n",
				c, med(rates[o]), med(cpus[o]), med(rates[s])/med(rates[o]), med(cpus[s])/med(cpus[o]))
			fmt.Printf("c=%d median: user-space CPU seer %.0f µs, old %.0f µs; seer/old: %.2f\n",
				c, med(users[s]), med(users[o]), med(users[s])/med(users[o]))
			if *redisPid != 0 {
				fmt.Printf("c=%d median: Redis %.1f µs CPU per old request; seer/old: %.2f\n",
					c, med(redisCPUs[o]), med(redisCPUs[s])/med(redisCPUs[o]))
			}
		}
		if floorDo != nil {
			f := key{c, "floor"}
			fmt.Printf("c=%d median: floor %.0f req/s, %.0f µs; seer/floor: rate %.2f, CPU %.2f\n",
				c, med(rates[f]), med(cpus[f]), med(rates[s])/med(rates[f]), med(cpus[s])/med(cpus[f]))
		}
	}
}
