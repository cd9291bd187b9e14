package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The feature log of the run: one scored query in a hundred (about 250
// MB over a whole run, 25 KB a line), rotated every 4 MiB and every file
// kept, so that at the end each line can be checked against what the
// clients were answered and what was uploaded.
const (
	featureLogPath   = "logs/features.jsonl"
	featureLogSample = 0.01
	featureLogKeep   = 1000
)

// featureLogConfig is the feature_log section of the run's config.
func featureLogConfig() string {
	return fmt.Sprintf("feature_log:\n  path: %s\n  sample: %g\n  max_bytes: %d\n  keep: %d\n",
		featureLogPath, featureLogSample, 4*mib, featureLogKeep)
}

// answered is a steady-load request answered 200, as its client saw it:
// the body sent and the scores answered, kept as their number and a hash
// (the whole run's answers would take hundreds of MB).
type answered struct {
	body   int
	n      int    // scores
	scores uint64 // scoresHash of them
	grpc   bool   // sent over gRPC
}

// scoresHash hashes scores (FNV-1a of their bits), every NaN alike.
func scoresHash(scores []float64) uint64 {
	h := uint64(14695981039346656037)
	for _, s := range scores {
		if math.IsNaN(s) {
			s = math.NaN()
		}
		b := math.Float64bits(s)
		for range 8 {
			h ^= b & 0xff
			h *= 1099511628211
			b >>= 8
		}
	}
	return h
}

// answers are the steady load's answered requests by request id.
type answers struct {
	mu   sync.Mutex
	byID map[string]answered
}

func (a *answers) add(id string, ans answered) {
	a.mu.Lock()
	if a.byID == nil {
		a.byID = map[string]answered{}
	}
	a.byID[id] = ans
	a.mu.Unlock()
}

// parseScores returns the scores of a one-query /v1/predict answer, NaN
// for null.
func parseScores(body []byte) ([]float64, error) {
	var ans struct {
		Results []struct {
			Scores []*float64 `json:"scores"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, err
	}
	if len(ans.Results) != 1 {
		return nil, fmt.Errorf("%d results", len(ans.Results))
	}
	out := make([]float64, len(ans.Results[0].Scores))
	for i, s := range ans.Results[0].Scores {
		out[i] = math.NaN()
		if s != nil {
			out[i] = *s
		}
	}
	return out, nil
}

// loggedQuery is one line of the feature log (docs/api.md, "Feature log").
type loggedQuery struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Model     string    `json:"model"`
	Version   string    `json:"version"`
	Rows      []struct {
		Entities map[string]string          `json:"entities"`
		Inputs   map[string]json.RawMessage `json:"inputs"`
		Sources  map[string]string          `json:"sources"`
		Why      map[string]string          `json:"why"`
		Scores   []*float64                 `json:"scores"`
	} `json:"rows"`
	DegradedValues int      `json:"degraded_values"`
	DegradedStores []string `json:"degraded_stores"`
}

// consumerValues are a consumer's uploaded numeric features.
type consumerValues struct {
	orders int
	spend  float64
}

// checkFeatureLog waits for the feature log to write what it queued, then
// reads every file of it and checks each line: it parses; a steady-load
// request's line has the entities, request features and scores its client
// sent and was answered; every input read from Redis or the cache is the
// value uploaded for its entity; degraded_values counts the rows'
// store_degraded inputs; and the files hold as many lines as seer counted
// written.
func (e *env) checkFeatureLog() *phaseResult {
	p := &phaseResult{name: "feature-log", from: 0, to: e.since(), whole: true}
	var m metrics
	for prev := -1.0; ; {
		var err error
		if m, err = e.scrape(); err != nil {
			p.check(false, "metrics: %v", err)
			return p
		}
		n := m.sum("seer_feature_log_queries_total")
		if n == prev {
			break
		}
		prev = n
		time.Sleep(time.Second)
	}
	written := m.sum("seer_feature_log_queries_total", `result="written"`)
	dropped := m.sum("seer_feature_log_queries_total", `result="dropped"`)
	failed := m.sum("seer_feature_log_queries_total", `result="failed"`)

	files := []string{filepath.Join(e.work, featureLogPath)}
	for i := 1; i <= featureLogKeep; i++ {
		files = append(files, fmt.Sprintf("%s.%d", files[0], i))
	}
	c := logCheck{e: e, p: p}
	for _, f := range files {
		if err := c.file(f); err != nil {
			if os.IsNotExist(err) && f != files[0] {
				break
			}
			p.check(false, "%v", err)
		}
	}
	p.st.requests = c.matched
	p.check(float64(c.lines) == written, "the files hold %d lines, seer counted %.0f written", c.lines, written)
	p.check(failed == 0, "%.0f queries failed to be written", failed)
	p.check(c.matched > 0, "no line of a steady-load request")
	p.note("%d lines in %d files (%.0f written, %.0f dropped, %.0f failed by seer's count); %d of them steady-load requests (%d over gRPC), checked against their bodies and answers; %d rows, %d inputs from Redis or the cache checked against the upload",
		c.lines, c.files, written, dropped, failed, c.matched, c.matchedGRPC, c.rows, c.stored)
	return p
}

// logCheck is checkFeatureLog's reading of the files.
type logCheck struct {
	e                          *env
	p                          *phaseResult
	files, lines, rows, stored int
	matched, matchedGRPC       int // lines of steady-load requests, over gRPC
	wrong                      int
}

// fail records a wrong line, the first few in full.
func (c *logCheck) fail(format string, args ...any) {
	c.wrong++
	if c.wrong <= 5 {
		c.p.check(false, format, args...)
	} else if c.wrong == 6 {
		c.p.check(false, "more wrong lines (only the first five are shown)")
	}
}

func (c *logCheck) file(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	c.files++
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		c.lines++
		var q loggedQuery
		if err := json.Unmarshal(sc.Bytes(), &q); err != nil {
			c.fail("%s:%d: does not parse: %v", filepath.Base(path), line, err)
			continue
		}
		c.query(&q, fmt.Sprintf("%s:%d (request %s)", filepath.Base(path), line, q.RequestID))
	}
	return sc.Err()
}

func (c *logCheck) query(q *loggedQuery, where string) {
	c.e.sent.mu.Lock()
	ans, ok := c.e.sent.byID[q.RequestID]
	c.e.sent.mu.Unlock()
	if ok {
		c.matched++
		if ans.grpc {
			c.matchedGRPC++
		}
		c.steady(q, ans, where)
	}
	degraded := 0
	at := q.Time.Sub(c.e.epoch) - time.Second // the request began at most its timeout before
	for i := range q.Rows {
		row := &q.Rows[i]
		c.rows++
		for name, src := range row.Sources {
			if row.Why[name] == "store_degraded" {
				degraded++
			}
			if src != "redis" && src != "cache" {
				continue
			}
			msg, checked := c.e.storedValue(row.Entities, name, row.Inputs[name], at)
			if checked {
				c.stored++
			}
			if msg != "" {
				c.fail("%s: rows[%d]: %s (from %s)", where, i, msg, src)
			}
		}
	}
	if degraded != q.DegradedValues {
		c.fail("%s: degraded_values %d, but %d inputs say store_degraded", where, q.DegradedValues, degraded)
	}
}

// steady checks a steady-load request's line against the body its client
// sent and the scores it was answered.
func (c *logCheck) steady(q *loggedQuery, ans answered, where string) {
	sent := parseBody(c.e.bodies[ans.body]).Queries[0]
	if len(q.Rows) != len(sent.Candidates) || len(q.Rows) != ans.n {
		c.fail("%s: %d rows, the query had %d candidates and was answered %d scores", where, len(q.Rows), len(sent.Candidates), ans.n)
		return
	}
	logged := make([]float64, len(q.Rows))
	for i := range q.Rows {
		row, cand := &q.Rows[i], sent.Candidates[i]
		if row.Entities["store"] != cand.Entities["store"] || row.Entities["consumer"] != sent.Context["consumer"] {
			c.fail("%s: rows[%d]: entities %v, sent store %s and consumer %s", where, i, row.Entities, cand.Entities["store"], sent.Context["consumer"])
			return
		}
		if got, want := string(row.Inputs["hour_of_day"]), strconv.Itoa(sent.Features["hour_of_day"]); got != want || row.Sources["hour_of_day"] != "request" {
			c.fail("%s: rows[%d]: hour_of_day %s from %s, sent %s", where, i, got, row.Sources["hour_of_day"], want)
			return
		}
		if got, err := strconv.ParseFloat(string(row.Inputs["distance_km"]), 64); err != nil || got != cand.Features["distance_km"] || row.Sources["distance_km"] != "request" {
			c.fail("%s: rows[%d]: distance_km %s from %s, sent %v", where, i, row.Inputs["distance_km"], row.Sources["distance_km"], cand.Features["distance_km"])
			return
		}
		if len(row.Scores) != 1 {
			c.fail("%s: rows[%d]: %d scores logged, want 1", where, i, len(row.Scores))
			return
		}
		logged[i] = math.NaN()
		if row.Scores[0] != nil {
			logged[i] = *row.Scores[0]
		}
	}
	if scoresHash(logged) != ans.scores {
		c.fail("%s: the logged scores %v are not those answered", where, logged)
	}
}

// storedValue says what is wrong with input name's value raw, read from
// Redis or the cache for a row of entities by a query that began at at
// (since the run began); "" when it is the value uploaded for the entity
// (or, until the last upload's bound, the one before). checked is false
// for an input the run does not know the values of.
func (e *env) storedValue(entities map[string]string, name string, raw json.RawMessage, at time.Duration) (msg string, checked bool) {
	store, consumer := entities["store"], entities["consumer"]
	num := func() (float64, bool) {
		v, err := strconv.ParseFloat(string(raw), 64)
		return v, err == nil
	}
	for k, f := range smallFeatures {
		if name == f {
			v, ok := num()
			if match, _ := e.vals.Load().match(store, k, v, at); !ok || !match {
				return fmt.Sprintf("store %s: %s %s, uploaded %v", store, name, raw, e.vals.Load().cur[store][k]), true
			}
			return "", true
		}
	}
	switch name {
	case "store_price_level", "store_cuisine", "store_is_open":
		i, err := strconv.Atoi(store)
		if err != nil || i < firstStore || i >= firstStore+numStores {
			return "store " + store + ": not a store of the data", true
		}
		rest := strings.Split(e.storeRest[i-firstStore], ",") // price level, cuisine, open
		want := map[string]string{"store_price_level": rest[0], "store_cuisine": strconv.Quote(rest[1]), "store_is_open": rest[2]}[name]
		if string(raw) != want {
			return fmt.Sprintf("store %s: %s %s, uploaded %s", store, name, raw, want), true
		}
		return "", true
	case "consumer_order_count", "consumer_avg_spend":
		cv, ok := e.consumerVals[consumer]
		if !ok {
			return "consumer " + consumer + ": not a consumer of the data", true
		}
		want := float64(cv.orders)
		if name == "consumer_avg_spend" {
			want = cv.spend
		}
		if v, ok := num(); !ok || v != want {
			return fmt.Sprintf("consumer %s: %s %s, uploaded %v", consumer, name, raw, want), true
		}
		return "", true
	}
	return "", false
}
