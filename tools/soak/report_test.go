package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 200; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 100 * time.Millisecond}, {0.99, 198 * time.Millisecond}, {1, 200 * time.Millisecond}, {0, time.Millisecond}} {
		if got := quantile(lat, tc.q); got != tc.want {
			t.Errorf("quantile(1..200ms, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile(nil) = %v, want 0", got)
	}
}

func TestSummarize(t *testing.T) {
	recs := []record{
		{start: 1 * time.Second, latency: 2 * time.Millisecond, status: 200},
		{start: 2 * time.Second, latency: 4 * time.Millisecond, status: 200, degraded: true},
		{start: 3 * time.Second, latency: 1 * time.Millisecond, status: 413},
		{start: 4 * time.Second, latency: 9 * time.Millisecond, status: 0},
		{start: 5 * time.Second, latency: 3 * time.Millisecond, status: 503},
		{start: 6 * time.Second, latency: 5 * time.Millisecond, status: 503},
	}
	st := summarize(recs)
	if st.requests != 6 || st.degraded != 1 || st.lastDegraded != 2*time.Second {
		t.Errorf("requests %d, degraded %d, last degraded %v; want 6, 1, 2s", st.requests, st.degraded, st.lastDegraded)
	}
	if got, want := st.non200(), "err:1 413:1 503:2"; got != want {
		t.Errorf("non200() = %q, want %q", got, want)
	}
	if st.p50 != 3*time.Millisecond || st.max != 9*time.Millisecond {
		t.Errorf("p50 %v, max %v; want 3ms, 9ms", st.p50, st.max)
	}
	if got := st.degradedPercent(); got < 16.6 || got > 16.7 {
		t.Errorf("degradedPercent() = %v, want 16.67", got)
	}
	if got := summarize(nil).non200(); got != "-" {
		t.Errorf("non200() of nothing = %q, want -", got)
	}
}

// steady returns a request every 10 ms from from to to, degraded when
// degraded says so.
func steady(from, to time.Duration, degraded func(time.Duration) bool) []record {
	var recs []record
	for at := from; at < to; at += 10 * time.Millisecond {
		recs = append(recs, record{start: at, status: 200, degraded: degraded(at)})
	}
	return recs
}

func TestBurstEnd(t *testing.T) {
	at := 10 * time.Second
	for _, tc := range []struct {
		name     string
		degraded func(time.Duration) bool
		want     time.Duration
	}{
		{"none", func(time.Duration) bool { return false }, -1},
		{"before the event only", func(d time.Duration) bool { return d < at }, -1},
		// Until 1.3 s after the event: the slice of 1 s to 1.5 s is
		// mostly degraded, not the next.
		{"burst", func(d time.Duration) bool { return d < at+1300*time.Millisecond }, 1500 * time.Millisecond},
		{"shorter burst", func(d time.Duration) bool { return d < at+1200*time.Millisecond }, time.Second},
		// One answer in twenty degraded all along: noise, not a burst.
		{"noise", func(d time.Duration) bool { return d/(10*time.Millisecond)%20 == 0 }, -1},
		// Half of them for 5 s from 3 s after the event.
		{"late burst", func(d time.Duration) bool {
			return d >= at+3*time.Second && d < at+8*time.Second && d/(10*time.Millisecond)%3 != 0
		}, 8 * time.Second},
	} {
		recs := steady(0, 30*time.Second, tc.degraded)
		if got := burstEnd(recs, at); got != tc.want {
			t.Errorf("%s: burstEnd = %v, want %v", tc.name, got, tc.want)
		}
	}
	recs := steady(0, 20*time.Second, func(d time.Duration) bool { return d >= 15*time.Second && d/(10*time.Millisecond)%4 == 0 })
	if got := degradedAfter(recs, 15*time.Second); got != 25 {
		t.Errorf("degradedAfter = %v, want 25", got)
	}
}

func TestDegradedEnds(t *testing.T) {
	p := &phaseResult{recs: steady(0, 20*time.Second, func(d time.Duration) bool { return d >= 5*time.Second && d < 9*time.Second })}
	p.degradedEnds(5*time.Second, 5*time.Second, "SIGCONT")
	if len(p.failures) != 0 {
		t.Errorf("a burst of 4s failed a bound of 5s: %v", p.failures)
	}
	p.degradedEnds(5*time.Second, time.Second, "SIGCONT")
	if len(p.failures) != 1 || !strings.Contains(p.failures[0], "4000.0ms after SIGCONT") {
		t.Errorf("a burst of 4s against a bound of 1s: failures %q", p.failures)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
process_resident_memory_bytes 3.3554432e+07
seer_retrieval_breaker_events_total{event="opened",store="main"} 2
seer_retrieval_breaker_events_total{event="rejected",store="main"} 17
seer_retrieval_breaker_events_total{event="opened",store="other"} 1
seer_http_requests_total{code="200",route="/v1/predict x"} 5
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m["go_goroutines"] != 42 || m["process_resident_memory_bytes"] != 32<<20 {
		t.Errorf("go_goroutines %v, RSS %v", m["go_goroutines"], m["process_resident_memory_bytes"])
	}
	for _, tc := range []struct {
		labels []string
		want   float64
	}{{nil, 20}, {[]string{`event="opened"`}, 3}, {[]string{`event="opened"`, `store="main"`}, 2}, {[]string{`event="closed"`}, 0}} {
		if got := m.sum("seer_retrieval_breaker_events_total", tc.labels...); got != tc.want {
			t.Errorf("sum(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if got := m.sum("seer_http_requests_total"); got != 5 {
		t.Errorf("a label value with a space: sum = %v, want 5", got)
	}
	if _, err := parseMetrics(strings.NewReader("go_goroutines forty\n")); err == nil {
		t.Error("a value that is not a number was accepted")
	}
}

func TestWriteTable(t *testing.T) {
	ok := &phaseResult{name: "control", to: 30 * time.Second, st: summarize([]record{{status: 200}})}
	ok.note("breaker openings 0")
	bad := &phaseResult{name: "seer-stop", from: 30 * time.Second, to: 50 * time.Second, st: summarize([]record{{status: 200, degraded: true}})}
	bad.check(true, "never shown")
	bad.check(false, "degraded answers went on until %s", "13s")
	var b bytes.Buffer
	if n := writeTable(&b, []*phaseResult{ok, bad}); n != 1 {
		t.Errorf("writeTable counted %d broken bounds, want 1", n)
	}
	out := b.String()
	for _, want := range []string{"control: breaker openings 0", "FAIL seer-stop: degraded answers went on until 13s", "FAIL (1)", "100.00%"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "never shown") {
		t.Errorf("a bound that held is listed:\n%s", out)
	}
}

func TestSilentDegraded(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"results":[{"scores":[0.5],"degraded":true,"degraded_values":12,"degraded_stores":["main"]}]}`, false},
		{`{"results":[{"scores":[0.5],"degraded":true,"degraded_values":0,"degraded_stores":["main"]}]}`, true},
		{`{"results":[{"scores":[0.5],"degraded":true,"degraded_stores":["main"]}]}`, true},
		{`{"results":[{"scores":[0.5],"degraded":true,"degraded_values":`, true},
	} {
		if got := silentDegraded([]byte(tc.body)); got != tc.want {
			t.Errorf("silentDegraded(%s) = %v, want %v", tc.body, got, tc.want)
		}
	}
}
