package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// record is one request of the steady load.
type record struct {
	start    time.Duration // since the run began
	latency  time.Duration
	status   int // 0: no answer (a transport error)
	degraded bool
	silent   bool // degraded, without a count of the values that took defaults
}

// timeline keeps every event of the run (a request's record, a probe)
// in the order they were added.
type timeline[T interface{ when() time.Duration }] struct {
	mu     sync.Mutex
	events []T
}

func (l *timeline[T]) add(ev T) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

// window returns the events that happened in [from, to).
func (l *timeline[T]) window(from, to time.Duration) []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []T
	for _, ev := range l.events {
		if at := ev.when(); at >= from && at < to {
			out = append(out, ev)
		}
	}
	return out
}

// when is the time the request started, since the run began.
func (r record) when() time.Duration { return r.start }

// stats summarizes the records of a phase.
type stats struct {
	requests int
	statuses map[int]int // answers other than 200 by status; 0 is no answer
	degraded int
	silent   int // degraded answers without degraded_values
	p50, p99 time.Duration
	max      time.Duration
	// lastDegraded is the start of the last request answered degraded, or
	// -1 when none was.
	lastDegraded time.Duration
}

func summarize(recs []record) stats {
	st := stats{requests: len(recs), statuses: map[int]int{}, lastDegraded: -1}
	lat := make([]time.Duration, 0, len(recs))
	for _, r := range recs {
		if r.status != 200 {
			st.statuses[r.status]++
		}
		if r.degraded {
			st.degraded++
			st.lastDegraded = max(st.lastDegraded, r.start)
		}
		if r.silent {
			st.silent++
		}
		lat = append(lat, r.latency)
	}
	slices.Sort(lat)
	st.p50, st.p99 = quantile(lat, 0.50), quantile(lat, 0.99)
	if len(lat) > 0 {
		st.max = lat[len(lat)-1]
	}
	return st
}

// quantile returns the q-quantile of sorted by the nearest-rank method,
// 0 for no values.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// degradedPercent returns the share of degraded answers, in percent.
func (st stats) degradedPercent() float64 {
	if st.requests == 0 {
		return 0
	}
	return 100 * float64(st.degraded) / float64(st.requests)
}

// non200 formats the answers other than 200 by status: "-" for none,
// else "503:4 err:1" (err: no answer).
func (st stats) non200() string {
	if len(st.statuses) == 0 {
		return "-"
	}
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(st.statuses)) {
		name := strconv.Itoa(s)
		if s == 0 {
			name = "err"
		}
		parts = append(parts, fmt.Sprintf("%s:%d", name, st.statuses[s]))
	}
	return strings.Join(parts, " ")
}

// metrics is a scrape of Prometheus's text format: each sample's value by
// its name with labels as exposed (`go_goroutines`,
// `seer_retrieval_breaker_events_total{event="opened",store="main"}`).
type metrics map[string]float64

func parseMetrics(r io.Reader) (metrics, error) {
	m := metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		// The value follows the last space (label values may hold spaces).
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %q: %w", line, err)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// sum returns the sum of the samples of metric name whose labels hold
// every one of labels (`event="opened"`).
func (m metrics) sum(name string, labels ...string) float64 {
	total := 0.0
	for k, v := range m {
		n, rest, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// phaseResult is what a phase measured and which of its bounds broke.
type phaseResult struct {
	name     string
	from, to time.Duration // since the run began

	recs                           []record    // the steady load's requests started in the phase
	reads                          []smallRead // the small reads started in the phase
	st                             stats
	rssStart, rssEnd, rssPeak      float64 // bytes
	goroutinesStart, goroutinesEnd float64

	m0, m1 metrics // seer's metrics at the start and the end

	notes    []string
	failures []string
	// whole is a check of the whole run after the phases, not a phase:
	// its row shows only how many requests it checked.
	whole bool
}

// check records a broken bound when ok is false.
func (p *phaseResult) check(ok bool, format string, args ...any) {
	if !ok {
		p.failures = append(p.failures, fmt.Sprintf(format, args...))
	}
}

// degradedEnds checks that the burst of degraded answers after the event
// at ended within bound.
func (p *phaseResult) degradedEnds(at, bound time.Duration, event string) {
	end := burstEnd(p.recs, at)
	p.check(end <= bound, "degraded answers went on until %s after %s (bound %s)", ms(end), event, bound)
	p.note("degraded burst ended %s after %s; from %s after it to the end of the phase %.2f%% degraded",
		since(end), event, bound, degradedAfter(p.recs, at+bound))
}

// since formats a duration after an event, -1 being never.
func since(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return ms(d)
}

func (p *phaseResult) note(format string, args ...any) {
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

// burstEnd returns how long after at the last burst of degraded answers
// ended: the end of the last 500 ms slice of the requests started after
// at in which at least eight answers, and most, were degraded; -1 when
// there was none. A fault degrades most answers until it is over (or its
// breaker closes); a loaded machine also degrades one now and then (the
// control phase measures how often), which is not a burst.
func burstEnd(recs []record, at time.Duration) time.Duration {
	const slice = 500 * time.Millisecond
	type count struct{ all, degraded int }
	buckets := map[int]*count{}
	for _, r := range recs {
		if r.start < at {
			continue
		}
		i := int((r.start - at) / slice)
		c := buckets[i]
		if c == nil {
			c = &count{}
			buckets[i] = c
		}
		c.all++
		if r.degraded {
			c.degraded++
		}
	}
	end := time.Duration(-1)
	for i, c := range buckets {
		if c.degraded >= 8 && 2*c.degraded > c.all {
			end = max(end, time.Duration(i+1)*slice)
		}
	}
	return end
}

// degradedAfter returns the share of degraded answers, in percent, among
// the requests started at or after at.
func degradedAfter(recs []record, at time.Duration) float64 {
	all, degraded := 0, 0
	for _, r := range recs {
		if r.start >= at {
			all++
			if r.degraded {
				degraded++
			}
		}
	}
	if all == 0 {
		return 0
	}
	return 100 * float64(degraded) / float64(all)
}

const mib = 1 << 20

// writeTable prints the phases as one table, then every phase's notes,
// then every broken bound, and returns the number of broken bounds.
func writeTable(w io.Writer, phases []*phaseResult) int {
	fmt.Fprintf(w, "%-12s %5s %8s %-18s %9s %8s %8s %8s %-24s %-11s %s\n",
		"phase", "secs", "requests", "non-200", "degraded", "p50", "p99", "max", "RSS MiB start>end (peak)", "goroutines", "bounds")
	failed := 0
	for _, p := range phases {
		verdict := "ok"
		if len(p.failures) > 0 {
			verdict = fmt.Sprintf("FAIL (%d)", len(p.failures))
			failed += len(p.failures)
		}
		if p.whole {
			fmt.Fprintf(w, "%-12s %5.0f %8d %-18s %9s %8s %8s %8s %-24s %-11s %s\n",
				p.name, (p.to - p.from).Seconds(), p.st.requests, "-", "-", "-", "-", "-", "-", "-", verdict)
			continue
		}
		fmt.Fprintf(w, "%-12s %5.0f %8d %-18s %8.2f%% %8s %8s %8s %-24s %-11s %s\n",
			p.name, (p.to - p.from).Seconds(), p.st.requests, p.st.non200(), p.st.degradedPercent(),
			ms(p.st.p50), ms(p.st.p99), ms(p.st.max),
			fmt.Sprintf("%.0f>%.0f (%.0f)", p.rssStart/mib, p.rssEnd/mib, p.rssPeak/mib),
			fmt.Sprintf("%.0f>%.0f", p.goroutinesStart, p.goroutinesEnd), verdict)
	}
	for _, p := range phases {
		for _, n := range p.notes {
			fmt.Fprintf(w, "  %s: %s\n", p.name, n)
		}
	}
	for _, p := range phases {
		for _, f := range p.failures {
			fmt.Fprintf(w, "FAIL %s: %s\n", p.name, f)
		}
	}
	return failed
}

// ms formats d in milliseconds.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
}
