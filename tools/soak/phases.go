package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
	"github.com/seer-ml/seer/internal/loadgen"
)

const breakerMetric = "seer_retrieval_breaker_events_total"

// soak holds the steady load and the probes for the whole run, runs the
// phases one after the other, and prints the table.
func (e *env) soak(ctx context.Context) error {
	fmt.Fprintf(e.out, "uptime at start: %s\n", uptime())
	fmt.Fprintf(e.out, "seer %s, %s of %d redis-servers (the generations hash on node %d), %d clients, %d candidates a query\n",
		e.seerURL, e.opts.store, len(e.nodes), e.markers+1, e.opts.c, e.opts.candidates)
	e.epoch = time.Now()
	stop := make(chan struct{})
	loadWG := e.load(stop, e.opts.c)
	readsWG := e.smallReads(stop, e.opts.readers)
	probeWG := e.probeEvery(stop, 250*time.Millisecond)
	mon := &rssMonitor{}
	go mon.run(stop, e.seer.Process.Pid)

	phases := []struct {
		name string
		run  func(context.Context, *phaseResult, *rssMonitor)
	}{
		{"control", e.control},
		{"seer-stop", e.seerStop},
		{"contention", e.contention},
		{"node-stop", e.nodeStop},
		{"debug-sleep", e.debugSleep},
		{"redis-kill", e.redisKill},
		{"artifacts", e.artifacts},
		{"cache-upload", e.cacheUpload},
		{"hostile", e.hostile},
	}
	var results []*phaseResult
	for _, ph := range phases {
		if ctx.Err() != nil || !e.seerAlive() {
			break
		}
		if e.opts.only != "" && ph.name != "control" && !slices.Contains(strings.Split(e.opts.only, ","), ph.name) {
			continue
		}
		p := &phaseResult{name: ph.name}
		ph.run(ctx, p, mon)
		results = append(results, p)
		fmt.Fprintf(os.Stderr, "soak: %s done at %.0fs: %d requests, %d bounds broke\n", p.name, e.since().Seconds(), p.st.requests, len(p.failures))
	}
	close(stop)
	loadWG.Wait()
	readsWG.Wait()
	probeWG.Wait()
	if !e.seerAlive() && len(results) > 0 {
		p := results[len(results)-1]
		p.check(false, "seer exited: %v (its log: %s)", e.seerErr, filepath.Join(e.work, "seer.log"))
	} else if len(results) > 0 {
		results = append(results, e.checkFeatureLog())
	}
	fmt.Fprintf(e.out, "uptime at end: %s\n", uptime())
	if e.opts.keep {
		if err := e.writeRecords(results); err != nil {
			return err
		}
	}
	if n := writeTable(e.out, results); n > 0 {
		return boundsError(n)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

func uptime() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(out))
}

// sleepUntil sleeps until offset t of the run, or until ctx is done.
func (e *env) sleepUntil(ctx context.Context, t time.Duration) {
	d := t - e.since()
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// begin starts a phase: its start, seer's RSS and goroutines, a fresh
// peak.
func (e *env) begin(p *phaseResult, mon *rssMonitor) {
	p.from = e.since()
	if m, err := e.scrape(); err == nil {
		p.m0 = m
		p.rssStart, p.goroutinesStart = m["process_resident_memory_bytes"], m["go_goroutines"]
	} else {
		p.check(false, "/metrics at the start: %v", err)
	}
	mon.peak.Store(0)
}

// end waits until the phase has lasted length, then measures it and
// checks the bounds every phase shares: seer runs, and every answer of
// the steady load is a 200.
func (e *env) end(ctx context.Context, p *phaseResult, mon *rssMonitor, length time.Duration) {
	e.sleepUntil(ctx, p.from+length)
	p.to = e.since()
	if m, err := e.scrape(); err == nil {
		p.m1 = m
		p.rssEnd, p.goroutinesEnd = m["process_resident_memory_bytes"], m["go_goroutines"]
	} else {
		p.check(false, "/metrics at the end: %v", err)
	}
	p.rssPeak = max(float64(mon.peak.Load()), p.rssEnd, p.rssStart)
	p.recs = e.rec.window(p.from, p.to)
	p.st = summarize(p.recs)
	p.check(e.seerAlive(), "seer exited: %v", e.seerErr)
	p.check(len(p.st.statuses) == 0, "steady load answered other than 200: %s", p.st.non200())
	p.check(p.st.requests > 0, "no request of the steady load was answered")
	if p.st.silent > 0 {
		body, _ := e.silentBody.Load().(string)
		p.check(false, "%d degraded answers without a degraded_values of at least 1; the first: %s", p.st.silent, body)
	}
	p.reads = e.reads.window(p.from, p.to)
	rs := smallStats(p.reads)
	p.check(rs.n > 0, "no small read was answered")
	p.check(rs.grpc > 0 || e.opts.readers < 2, "no small read over gRPC was answered")
	p.check(rs.wrong == 0, "%d small reads answered values that were not their store's; the first: %s", rs.wrong, rs.first)
	p.note("small reads: %d answered (%d over gRPC), %.2f%% degraded, %d values read from the store checked against the upload, %d wrong",
		rs.n, rs.grpc, percent(rs.degraded, rs.n), rs.checked, rs.wrong)
	checked, wrong, first := 0, 0, ""
	for _, pr := range e.probes.window(p.from, p.to) {
		checked += pr.checked
		if pr.wrong != "" {
			wrong++
			first = cmp.Or(first, pr.wrong)
		}
	}
	p.check(wrong == 0, "%d probes answered values that were not their store's; the first: %s", wrong, first)
	p.note("probes: %d store values in debug rows checked against the upload, %d probes with a wrong one", checked, wrong)
}

// readStats counts the answered small reads, those over gRPC, the
// degraded ones, the values checked, and the reads with a wrong value
// (and the first one).
type readStats struct {
	n, grpc, degraded, checked, wrong int
	first                             string
}

func smallStats(reads []smallRead) readStats {
	var rs readStats
	for _, rd := range reads {
		if rd.status != 200 {
			continue
		}
		rs.n++
		if rd.grpc {
			rs.grpc++
		}
		if rd.degraded {
			rs.degraded++
		}
		rs.checked += rd.checked
		if rd.wrong != "" {
			rs.wrong++
			if rs.first == "" {
				rs.first = rd.wrong
			}
		}
	}
	return rs
}

func percent(k, n int) float64 {
	if n == 0 {
		return 0
	}
	return 100 * float64(k) / float64(n)
}

// delta returns how much metric name (with labels) grew over the phase.
func (p *phaseResult) delta(name string, labels ...string) float64 {
	return p.m1.sum(name, labels...) - p.m0.sum(name, labels...)
}

// cells sums the probes' cells, by node.
func cells(ps []probe) (redis, degraded, absent [3]int, other int) {
	for _, p := range ps {
		for n := range 3 {
			redis[n] += p.redis[n]
			degraded[n] += p.degraded[n]
			absent[n] += p.absent[n]
		}
		other += p.other
	}
	return
}

// onlyNodeDegraded checks that while node n was at fault, in [from, to),
// the other nodes' inputs were read: at most a tenth of the probes found
// one of them degraded. (A loaded machine makes a read miss its deadline
// now and then, whichever node holds it; a fault blamed on the wrong
// nodes, or on the whole store, degrades them in every probe.)
func (e *env) onlyNodeDegraded(p *phaseResult, from, to time.Duration, n int) {
	probes := e.probes.window(from, to)
	redis, degraded, _, _ := cells(probes)
	wrong := 0
	for _, pr := range probes {
		for i := range 3 {
			if i != n && pr.degraded[i] > 0 {
				wrong++
				break
			}
		}
	}
	p.check(len(probes) > 0 && 10*wrong <= len(probes), "%d of %d probes found inputs of other nodes than %d degraded", wrong, len(probes), n+1)
	p.note("%d probes while node %d was at fault, %d with other nodes' inputs degraded; inputs by node from redis/degraded %d/%d, %d/%d, %d/%d",
		len(probes), n+1, wrong, redis[0], degraded[0], redis[1], degraded[1], redis[2], degraded[2])
}

// failCounts counts the answers to queries that ask for on_degraded fail.
type failCounts struct {
	ok, other int
	failedAt  []time.Duration // when each query answered 503 was sent
}

// askFail sends the steady load's query with "on_degraded": "fail" every
// 100 ms until stop is closed, and counts the answers: 200, or 503 with
// the store named in degraded_stores.
func (e *env) askFail(stop <-chan struct{}) func() failCounts {
	var c failCounts
	done := make(chan struct{})
	go func() {
		defer close(done)
		i := 0
		every(stop, 100*time.Millisecond, func() bool {
			body := bytes.Replace(e.bodies[i%len(e.bodies)], []byte(`{"debug":false,`), []byte(`{"debug":false,"on_degraded":"fail",`), 1)
			i++
			at := e.since()
			resp, err := e.client.Post(e.seerURL+"/v1/predict", "application/json", bytes.NewReader(body))
			if err != nil {
				c.other++
				return true
			}
			var ans struct {
				DegradedStores []string `json:"degraded_stores"`
			}
			derr := json.NewDecoder(resp.Body).Decode(&ans)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200:
				c.ok++
			case resp.StatusCode == 503 && derr == nil && slices.Contains(ans.DegradedStores, "main"):
				c.failedAt = append(c.failedAt, at)
			default:
				c.other++
			}
			return true
		})
	}()
	return func() failCounts {
		<-done
		return c
	}
}

// watchBreaker polls /readyz every 100 ms until stop is closed and
// returns when the store's node at addr was first and last seen with its
// breaker open, -1 when never.
func (e *env) watchBreaker(stop <-chan struct{}, addr string) func() (first, last time.Duration) {
	first, last := time.Duration(-1), time.Duration(-1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		every(stop, 100*time.Millisecond, func() bool {
			at := e.since()
			resp, err := e.client.Get(e.seerURL + "/readyz")
			if err != nil {
				return true
			}
			type node struct {
				Addr   string `json:"addr"`
				Status string `json:"status"`
			}
			var body struct {
				Stores map[string]struct {
					Nodes []node `json:"nodes"`
				} `json:"stores"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			open := slices.ContainsFunc(body.Stores["main"].Nodes, func(n node) bool { return n.Addr == addr && n.Status == "breaker_open" })
			if err == nil && open {
				if first < 0 {
					first = at
				}
				last = at
			}
			return true
		})
	}()
	return func() (time.Duration, time.Duration) {
		<-done
		return first, last
	}
}

// control: nothing injected. Saturating load against healthy Redis
// degrades at most 0.1 % of the answers, and every probed input is read.
func (e *env) control(ctx context.Context, p *phaseResult, mon *rssMonitor) {
	e.begin(p, mon)
	e.end(ctx, p, mon, e.opts.phase)
	e.controlP99 = p.st.p99
	p.check(p.st.degradedPercent() <= 0.1, "%.2f%% degraded answers with healthy Redis (bound 0.1%%)", p.st.degradedPercent())
	if rs := smallStats(p.reads); percent(rs.degraded, rs.n) > 0.1 {
		p.check(false, "%.2f%% degraded small reads with healthy Redis (bound 0.1%%)", percent(rs.degraded, rs.n))
	}
	redis, degraded, absent, other := cells(e.probes.window(p.from, p.to))
	total := redis[0] + redis[1] + redis[2]
	p.check(total > 0 && absent == [3]int{} && other == 0,
		"probed inputs not all in Redis: read %v, absent %v, other defaults %d", redis, absent, other)
	p.note("breaker openings %.0f; probed inputs by node read from Redis %v, degraded %v",
		p.delta(breakerMetric, `event="opened"`), redis, degraded)
	e.checkTwin(p)
}

// seerStop: seer itself is stopped for 150 ms. Degraded answers end
// within 1 s of SIGCONT, and no node's breaker opens.
func (e *env) seerStop(ctx context.Context, p *phaseResult, mon *rssMonitor) {
	e.begin(p, mon)
	e.sleepUntil(ctx, p.from+5*time.Second)
	_ = e.seer.Process.Signal(syscall.SIGSTOP)
	time.Sleep(150 * time.Millisecond)
	_ = e.seer.Process.Signal(syscall.SIGCONT)
	cont := e.since()
	e.end(ctx, p, mon, 20*time.Second)
	p.degradedEnds(cont, time.Second, "SIGCONT")
	opened := p.delta(breakerMetric, `event="opened"`)
	p.check(opened == 0, "breakers opened %.0f times: seer's own stop was blamed on a node", opened)
	p.note("breaker openings %.0f", opened)
}

// contention: four busy loops share the machine's cores with seer for
// 15 s, so that its goroutines wait to run, as on an overloaded machine or
// in a throttled container. Answers may degrade meanwhile, but none
// carries a value that is not its entity's (every phase checks that), and
// degraded answers, of the steady load and of the small reads, end
// within 2 s of the loops' end.
func (e *env) contention(ctx context.Context, p *phaseResult, mon *rssMonitor) {
	e.begin(p, mon)
	e.sleepUntil(ctx, p.from+5*time.Second)
	var loops []*exec.Cmd
	for range 4 {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			p.check(false, "a busy loop: %v", err)
			break
		}
		loops = append(loops, cmd)
	}
	e.sleepUntil(ctx, p.from+20*time.Second)
	for _, cmd := range loops {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	stopped := e.since()
	e.end(ctx, p, mon, 35*time.Second)
	p.degradedEnds(stopped, 2*time.Second, "the busy loops' end")
	var late, lateDegraded int
	for _, rd := range p.reads {
		if rd.status == 200 && rd.at >= stopped+2*time.Second {
			late++
			if rd.degraded {
				lateDegraded++
			}
		}
	}
	p.check(late > 0 && percent(lateDegraded, late) <= 1, "%d of %d small reads degraded from 2 s after the busy loops' end (bound 1%%)", lateDegraded, late)
	p.note("%d busy loops for %s; small reads from 2 s after their end: %d, %d degraded", len(loops), stopped-p.from-5*time.Second, late, lateDegraded)
}

// cacheUpload: the cache answers live for the phase, and 5 s in every
// store's values are uploaded again, each one changed. A small read may
// answer a store's old values until the cache's marker_poll (5 s, its
// default) and 2 s more after the upload's end, and only the new ones
// after that; the cache answers some of them.
func (e *env) cacheUpload(ctx context.Context, p *phaseResult, mon *rssMonitor) {
	const bound = 7 * time.Second
	e.begin(p, mon)
	if err := e.cacheMode("live"); err != nil {
		p.check(false, "the cache, live: %v", err)
	}
	defer func() {
		if err := e.cacheMode("off"); err != nil {
			p.check(false, "the cache, off again: %v", err)
		}
	}()
	e.sleepUntil(ctx, p.from+5*time.Second)
	old := e.vals.Load().cur
	next := make(map[string][3]float64, len(old))
	for id, v := range old {
		next[id] = [3]float64{v[0] + 1, v[1] + 1, v[2] + 1}
	}
	next, err := e.writeStores(next)
	if err != nil {
		p.check(false, "stores.csv: %v", err)
		return
	}
	e.vals.Store(&storeValues{cur: next, prev: old, prevUntil: math.MaxInt64})
	took, err := e.upload(ctx)
	p.check(err == nil, "the upload of the new values: %v", err)
	uploaded := e.since()
	e.vals.Store(&storeValues{cur: next, prev: old, prevUntil: uploaded + bound})
	e.end(ctx, p, mon, 25*time.Second)
	olds, lastOld := 0, "none after its end"
	for _, rd := range p.reads {
		if rd.old {
			olds++
			if d := rd.at - uploaded; d >= 0 {
				lastOld = "the last sent " + ms(d) + " after its end"
			}
		}
	}
	hits := p.delta("seer_cache_lookups_total", `result="hit"`)
	p.check(hits > 0, "the cache answered no lookup")
	p.note("upload of new values took %s; %d small reads answered old values, %s (bound %s); cache hits %.0f, misses %.0f",
		ms(took), olds, lastOld, bound, hits, p.delta("seer_cache_lookups_total", `result="miss"`))
}

// cacheMode sets the cache's mode for every batch feature through the
// admin endpoint.
func (e *env) cacheMode(mode string) error {
	req, err := http.NewRequest(http.MethodPut, e.seerURL+"/v1/admin/cache", strings.NewReader(`{"mode": "`+mode+`"}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer soak")
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// nodeStop: one node (not the one with the generations hash) is
// stopped for 5 s. Its breaker opens, only its inputs degrade, and
// degraded answers end within the breaker's cooldown + 1 s of SIGCONT.
func (e *env) nodeStop(ctx context.Context, p *phaseResult, mon *rssMonitor) {
	x := (e.markers + 1) % len(e.nodes)
	e.begin(p, mon)
	stopWatch := make(chan struct{})
	breaker := e.watchBreaker(stopWatch, e.nodes[x].addr())
	failing := e.askFail(stopWatch)
	e.sleepUntil(ctx, p.from+5*time.Second)
	e.nodes[x].signal(syscall.SIGSTOP)
	stopped := e.since()
	e.sleepUntil(ctx, p.from+10*time.Second)
	e.nodes[x].signal(syscall.SIGCONT)
	cont := e.since()
	e.end(ctx, p, mon, 25*time.Second)
	close(stopWatch)
	first, last := breaker()
	fails := failing()
	bound := breakerCooldown + time.Second
	p.check(fails.other == 0, "%d answers to on_degraded fail were neither 200 nor a 503 naming the store", fails.other)
	during := 0
	for _, at := range fails.failedAt {
		if at >= stopped && at <= cont+bound {
			during++
		}
	}
	p.check(during > 0, "no answer to on_degraded fail was a 503 while the node was stopped")
	p.note("on_degraded fail, a query every 100 ms: %d answered 200, %d 503 naming the store (%d of them sent while the node was at fault)",
		fails.ok, len(fails.failedAt), during)
	opened := p.delta(breakerMetric, `event="opened"`)
	p.check(opened >= 1 && first >= 0, "the stopped node's breaker never opened")
	p.check(last-cont <= bound, "the breaker was still open %s after SIGCONT (bound: cooldown %s + 1s)", ms(last-cont), breakerCooldown)
	p.degradedEnds(cont, bound, "SIGCONT")
	e.onlyNodeDegraded(p, stopped, cont+bound, x)
	p.note("node %d stopped 5s: breaker opened %.0f times, open in /readyz from %s after SIGSTOP until %s after SIGCONT",
		x+1, opened, ms(first-stopped), ms(last-cont))
}

// debugSleep: one node runs DEBUG SLEEP 0.2 every 0.5 s for 10 s. Only
// its inputs degrade; it answers within read_timeout, so its breaker
// stays closed and degraded answers end within 1 s of the last sleep.
func (e *env) debugSleep(ctx context.Context, p *phaseResult, mon *rssMonitor) {
	y := (e.markers + 1) % len(e.nodes)
	e.begin(p, mon)
	e.sleepUntil(ctx, p.from+5*time.Second)
	slow := e.since()
	sleeps := 0
	for e.since() < p.from+15*time.Second && ctx.Err() == nil {
		if err := e.nodes[y].cl.Do(ctx, "DEBUG", "SLEEP", "0.2").Err(); err != nil {
			p.check(false, "DEBUG SLEEP: %v", err)
			break
		}
		sleeps++
		time.Sleep(300 * time.Millisecond)
	}
	last := e.since() - 300*time.Millisecond
	// Breaker openings until 1 s after the slowness: a stall of the
	// whole machine later in the phase is not this node's doing.
	e.sleepUntil(ctx, last+time.Second)
	m, err := e.scrape()
	p.check(err == nil, "/metrics: %v", err)
	opened := m.sum(breakerMetric, `event="opened"`) - p.m0.sum(breakerMetric, `event="opened"`)
	e.end(ctx, p, mon, 25*time.Second)
	p.check(opened == 0, "breakers opened %.0f times for a node that answered within read_timeout", opened)
	p.degradedEnds(last, time.Second, "the last DEBUG SLEEP")
	e.onlyNodeDegraded(p, slow, last+time.Second, y)
	p.note("node %d: %d DEBUG SLEEP 0.2; breaker openings %.0f", y+1, sleeps, opened)
}

// redisKill: the node holding the generations hash is killed (SIGKILL),
// restarted empty 3 s later, and both tables are uploaded again 4 s after
// that. No 5xx, seer keeps running, and every probed input is read from
// Redis again within 10 s of the upload's end.
func (e *env) redisKill(ctx context.Context, p *phaseResult, mon *rssMonitor) {
	m := e.markers
	n := e.nodes[m]
	e.begin(p, mon)
	e.sleepUntil(ctx, p.from+5*time.Second)
	n.signal(syscall.SIGKILL)
	killed := e.since()
	e.sleepUntil(ctx, p.from+8*time.Second)
	if err := n.start(ctx); err != nil {
		p.check(false, "restart node %d: %v", m+1, err)
	} else if n.bus != 0 {
		p.check(n.clusterOK(ctx) == nil, "node %d restarted: the cluster is not ok", m+1)
	}
	restarted := e.since()
	e.sleepUntil(ctx, p.from+12*time.Second)
	took, err := e.upload(ctx)
	p.check(err == nil, "%v", err)
	uploaded := e.since()
	back := time.Duration(-1)
	for e.since() < uploaded+15*time.Second && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		for _, pr := range e.probes.window(uploaded, e.since()) {
			redis, degraded, absent, other := cells([]probe{pr})
			if pr.status == 200 && redis != [3]int{} && degraded == [3]int{} && absent == [3]int{} && other == 0 {
				back = pr.at - uploaded
				break
			}
		}
		if back >= 0 {
			break
		}
	}
	e.end(ctx, p, mon, 35*time.Second)
	p.check(back >= 0 && back <= 10*time.Second, "probed inputs not all read from Redis within 10s of the upload (%s)", since(back))
	_, degK, absK, _ := cells(e.probes.window(killed, restarted))
	_, degR, absR, _ := cells(e.probes.window(restarted, uploaded))
	p.note("node %d killed: probed inputs degraded %v, absent %v by node until its restart; then degraded %v, absent %v until the upload",
		m+1, degK, absK, degR, absR)
	p.note("upload after the restart took %s; every probed input read again %s after it; breaker openings %.0f",
		ms(took), since(back), p.delta(breakerMetric, `event="opened"`))
}

// artifacts: junk, truncated, oversized, blocking and outside-the-root
// artifacts are dropped into the models root one every 3 s, then an
// alias to a missing version, then a good version of 100 MiB. The good
// version keeps serving, the new good one loads within 10 s, RSS rises at
// most the format's cap + 64 MiB, and no request of the steady load takes
// over 500 ms.
func (e *env) artifacts(ctx context.Context, p *phaseResult, mon *rssMonitor) {
	root := filepath.Join(e.work, "models", model)
	stage := filepath.Join(e.work, "stage")
	bad, err := e.stageArtifacts(stage)
	if err != nil {
		p.check(false, "staging artifacts: %v", err)
		return
	}
	e.begin(p, mon)
	var peaks []string
	for i, v := range bad {
		e.sleepUntil(ctx, p.from+time.Duration(3*(i+1))*time.Second)
		if i > 0 {
			peaks = append(peaks, fmt.Sprintf("%s +%.0f", bad[i-1].name, (float64(mon.peak.Load())-p.rssStart)/mib))
		}
		if err := os.Rename(filepath.Join(stage, v.version), filepath.Join(root, v.version)); err != nil {
			p.check(false, "%v", err)
		}
	}
	e.sleepUntil(ctx, p.from+time.Duration(3*(len(bad)+1))*time.Second)
	peaks = append(peaks, fmt.Sprintf("%s +%.0f", bad[len(bad)-1].name, (float64(mon.peak.Load())-p.rssStart)/mib))
	if err := os.WriteFile(filepath.Join(root, "aliases.yaml"), []byte("production: 99\n"), 0o644); err != nil {
		p.check(false, "%v", err)
	}
	e.sleepUntil(ctx, p.from+time.Duration(3*(len(bad)+2))*time.Second)
	if err := os.Rename(filepath.Join(stage, "8"), filepath.Join(root, "8")); err != nil {
		p.check(false, "%v", err)
	}
	good := e.since()
	loaded := time.Duration(-1)
	var failures []string
	for e.since() < good+15*time.Second && ctx.Err() == nil {
		time.Sleep(250 * time.Millisecond)
		versions, fails, err := e.models()
		if err != nil {
			continue
		}
		failures = fails
		if slices.Contains(versions, "8") {
			loaded = e.since() - good
			break
		}
	}
	e.sleepUntil(ctx, good+10*time.Second)
	for _, v := range bad {
		_ = os.RemoveAll(filepath.Join(root, v.version))
	}
	_ = os.Remove(filepath.Join(root, "aliases.yaml"))
	e.end(ctx, p, mon, good+12*time.Second-p.from)
	p.check(loaded >= 0 && loaded <= 10*time.Second, "a good version dropped beside the bad ones was not loaded within 10s (%s)", since(loaded))
	rise := p.rssPeak - p.rssStart
	p.check(rise <= artifactCap+64*mib, "RSS rose %.0f MiB (bound: the LightGBM cap %d MiB + 64 MiB)", rise/mib, artifactCap/mib)
	// 500 ms: with the artifact's buffer zeroed preemptibly the slowest
	// request took 31 to 60 ms (docs/soak.md); before, up to 1.36 s.
	p.check(p.st.max <= 500*time.Millisecond, "a request of the steady load took %s (bound 500ms: serving stalled)", ms(p.st.max))
	p.note("bad versions dropped 3s apart, RSS peak over the phase's start (MiB) by then: %s", strings.Join(peaks, ", "))
	p.note("then production -> 99, then a good version 8 of 100 MiB, loaded %s after it was dropped", since(loaded))
	p.note("/v1/models failures: %s", strings.Join(failures, "; "))
}

// padded returns a LightGBM text model with n bytes of parameter lines
// added before "end of parameters": still a valid model (both evaluators
// stop reading at "end of trees"), and as large as one of many trees, so
// that loading it costs what deploying a big model costs.
func padded(model []byte, n int) ([]byte, error) {
	at := bytes.Index(model, []byte("end of parameters"))
	if at < 0 {
		return nil, errors.New(`the good model has no "end of parameters" line`)
	}
	line := []byte("[soak_padding: " + strings.Repeat("x", 100) + "]\n")
	out := make([]byte, 0, len(model)+n+len(line))
	out = append(out, model[:at]...)
	for written := 0; written < n; written += len(line) {
		out = append(out, line...)
	}
	return append(out, model[at:]...), nil
}

// badVersion is a bad version staged for the artifacts phase.
type badVersion struct{ version, name string }

// stageArtifacts writes the bad versions 2 to 7 and the good version 8
// under stage, to be renamed into the models root, and returns the bad
// ones.
func (e *env) stageArtifacts(stage string) ([]badVersion, error) {
	v1 := filepath.Join(e.work, "models", model, "1")
	manifest, err := os.ReadFile(filepath.Join(v1, "manifest.yaml"))
	if err != nil {
		return nil, err
	}
	good, err := os.ReadFile(filepath.Join(v1, "model.txt"))
	if err != nil {
		return nil, err
	}
	junk := func(w io.Writer, n int64) error {
		r := rand.NewChaCha8([32]byte{7})
		_, err := io.CopyN(w, r, n)
		return err
	}
	artifacts := map[string]func(path string) error{
		"2": func(path string) error { // over the cap, sparse
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(300 * mib)
		},
		"3": func(path string) error { // junk from the first byte
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer f.Close()
			return junk(f, 32*mib)
		},
		"4": func(path string) error { // a truncated model
			return os.WriteFile(path, good[:len(good)/2], 0o644)
		},
		"5": func(path string) error { // a valid beginning, then junk
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.Write(good[:len(good)/2]); err != nil {
				return err
			}
			return junk(f, 200*mib)
		},
		"6": func(path string) error { return syscall.Mkfifo(path, 0o644) },
		"7": func(path string) error { return os.Symlink("/etc/passwd", path) },
		"8": func(path string) error { // a good model, as large as a big one
			big, err := padded(good, 100*mib)
			if err != nil {
				return err
			}
			return os.WriteFile(path, big, 0o644)
		},
	}
	names := map[string]string{"2": "300MiB-sparse", "3": "32MiB-junk", "4": "truncated", "5": "head+200MiB-junk", "6": "fifo", "7": "link-/etc/passwd"}
	var bad []badVersion
	for _, v := range slices.Sorted(maps.Keys(artifacts)) {
		dir := filepath.Join(stage, v)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		m := bytes.Replace(manifest, []byte(`version: "1"`), []byte(`version: "`+v+`"`), 1)
		if err := os.WriteFile(filepath.Join(dir, "manifest.yaml"), m, 0o644); err != nil {
			return nil, err
		}
		if err := artifacts[v](filepath.Join(dir, "model.txt")); err != nil {
			return nil, fmt.Errorf("version %s: %w", v, err)
		}
		if v != "8" {
			bad = append(bad, badVersion{v, names[v]})
		}
	}
	return bad, nil
}

// models returns the loaded versions of the model and the failures
// /v1/models lists.
func (e *env) models() (versions, failures []string, err error) {
	resp, err := e.client.Get(e.seerURL + "/v1/models")
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Models []struct {
			Name     string `json:"name"`
			Versions []struct {
				Version string `json:"version"`
			} `json:"versions"`
		} `json:"models"`
		Failures []struct {
			Dir    string   `json:"dir"`
			Errors []string `json:"errors"`
		} `json:"failures"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, nil, err
	}
	for _, m := range body.Models {
		if m.Name == model {
			for _, v := range m.Versions {
				versions = append(versions, v.Version)
			}
		}
	}
	for _, f := range body.Failures {
		s := strings.Join(f.Errors, ", ")
		if len(s) > 100 {
			s = s[:100] + "..."
		}
		failures = append(failures, strings.TrimPrefix(f.Dir, model+"/")+": "+s)
	}
	return versions, failures, nil
}

// hostileKind is one kind of hostile request and the statuses it may
// get.
type hostileKind struct {
	name   string
	body   []byte // a /v1/predict body, or the message of a gRPC method
	method string // the gRPC method; none for /v1/predict
}

func hostileKinds() []hostileKind {
	prefix := `{"queries":[{"model":"` + model + `",`
	million := bytes.Repeat([]byte("{},"), 1_000_000)
	million[len(million)-1] = ']'
	deep := bytes.Repeat([]byte("["), 1<<20)
	const predict = seerv1.Seer_Predict_FullMethodName
	return []hostileKind{
		{"oversized", slices.Concat([]byte(prefix+`"id":"`), bytes.Repeat([]byte("a"), 5*mib), []byte(`"}]}`)), ""},
		{"1e6-candidates", slices.Concat([]byte(prefix+`"candidates":[`), million, []byte(`}]}`)), ""},
		{"1MiB-id", slices.Concat([]byte(prefix+`"context":{"consumer":"`), bytes.Repeat([]byte("7"), mib), []byte(`"}}]}`)), ""},
		{"bad-json", []byte(prefix + `"candidates":[{"entities":{"store":}}]}]}`), ""},
		{"deep-nesting", slices.Concat([]byte(prefix+`"features":{"x":`), deep), ""},
		{"grpc-oversized", grpcMessage(&seerv1.PredictRequest{Queries: []*seerv1.Query{{Model: model, Id: strings.Repeat("a", 5*mib)}}}), predict},
		{"grpc-1e6-candidates", grpcMessage(&seerv1.PredictRequest{Queries: []*seerv1.Query{{Model: model, Candidates: make([]*seerv1.Candidate, 1_000_000)}}}), predict},
		{"grpc-cut-short", []byte{0x0a, 0x05, 0x0a}, predict},
		{"grpc-bad-utf8", []byte{0x0a, 0x03, 0x0a, 0x01, 0xc3}, predict},
		{"grpc-health-bad-utf8", []byte{0x0a, 0x01, 0xc3}, healthpb.Health_Check_FullMethodName},
	}
}

func grpcMessage(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// quietGoroutines pauses the steady load and the probes for a second and
// returns seer's goroutines then (-1 when /metrics fails).
func (e *env) quietGoroutines() float64 {
	e.paused.Store(true)
	defer e.paused.Store(false)
	time.Sleep(time.Second)
	m, err := e.scrape()
	if err != nil {
		return -1
	}
	return m["go_goroutines"]
}

// hostile: a second client sends oversized bodies, 10^6 candidates, a
// 1 MiB id, bad JSON and deeply nested JSON in a loop, and over gRPC an
// oversized message, 10^6 candidates and messages that do not parse (to
// Predict and to the health service's Check); 32
// connections trickle a body one byte every 250 ms, and three clients
// abandon normal requests after 1 to 20 ms, one of them over gRPC. Each
// hostile request is answered 4xx (or INVALID_ARGUMENT,
// RESOURCE_EXHAUSTED) within 1 s; the steady load's p99 stays within twice the control's + 50 ms;
// RSS rises at most 128 MiB; goroutines come back; queries abandoned by
// their clients are not counted as degraded.
func (e *env) hostile(ctx context.Context, p *phaseResult, mon *rssMonitor) {
	controlP99 := e.controlP99
	kinds := hostileKinds()
	e.begin(p, mon)
	quietStart := e.quietGoroutines()
	stop := make(chan struct{})
	var wg sync.WaitGroup

	// Slow bodies.
	var mu sync.Mutex
	var closedAfter []time.Duration
	addr := strings.TrimPrefix(e.seerURL, "http://")
	var conns []net.Conn
	for range 32 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			p.check(false, "slow client: %v", err)
			break
		}
		conns = append(conns, c)
		opened := time.Now()
		fmt.Fprintf(c, "POST /v1/predict HTTP/1.1\r\nHost: seer\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
		wg.Go(func() { // reads until seer closes the connection
			_, _ = io.Copy(io.Discard, c)
			select {
			case <-stop:
			default:
				mu.Lock()
				closedAfter = append(closedAfter, time.Since(opened))
				mu.Unlock()
			}
		})
		wg.Go(func() {
			every(stop, 250*time.Millisecond, func() bool {
				_, err := c.Write([]byte(" "))
				return err == nil
			})
		})
	}

	// Clients that go away.
	var abandoned atomic.Int64
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+r.IntN(20))*time.Millisecond)
				req, _ := http.NewRequestWithContext(cctx, "POST", e.seerURL+"/v1/predict", bytes.NewReader(e.bodies[i%len(e.bodies)]))
				if resp, err := e.client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				} else {
					abandoned.Add(1)
				}
				cancel()
			}
		})
	}

	// A gRPC client that goes away, on a connection of its own (as is the
	// hostile client's gRPC).
	gcc, err := grpc.NewClient(e.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.check(false, "gRPC client: %v", err)
		return
	}
	wg.Go(func() {
		r := rand.New(rand.NewPCG(2, 9))
		client := seerv1.NewSeerClient(gcc)
		for {
			select {
			case <-stop:
				return
			default:
			}
			req := protoPredict(predictBody(r, e.opts.candidates, false))
			cctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+r.IntN(20))*time.Millisecond)
			if _, err := client.Predict(cctx, req); err != nil {
				abandoned.Add(1)
			}
			cancel()
		}
	})

	// The hostile client.
	type result struct {
		n        int
		statuses map[string]int
		bad      []string // statuses other than 4xx (INVALID_ARGUMENT, RESOURCE_EXHAUSTED over gRPC)
		max      time.Duration
	}
	results := make([]result, len(kinds))
	for i := range results {
		results[i].statuses = map[string]int{}
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := 0; e.since() < p.from+e.opts.phase-3*time.Second && ctx.Err() == nil; i++ {
		k := i % len(kinds)
		start := time.Now()
		var outcome string
		var ok bool
		if kinds[k].method != "" {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			// Any answer parses as an Empty (its fields unknown, kept).
			err := gcc.Invoke(cctx, kinds[k].method, &kinds[k].body, new(emptypb.Empty), grpc.ForceCodec(loadgen.RawCodec{}))
			cancel()
			code := status.Code(err)
			outcome, ok = code.String(), code == codes.InvalidArgument || code == codes.ResourceExhausted
		} else {
			code := 0
			if resp, err := hc.Post(e.seerURL+"/v1/predict", "application/json", bytes.NewReader(kinds[k].body)); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			outcome, ok = strconv.Itoa(code), code >= 400 && code < 500
		}
		results[k].n++
		if results[k].statuses[outcome]++; !ok && results[k].statuses[outcome] == 1 {
			results[k].bad = append(results[k].bad, outcome)
		}
		results[k].max = max(results[k].max, time.Since(start))
	}
	close(stop)
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	gcc.Close()
	// The abandoned requests' connections: seer keeps a goroutine for
	// each idle one.
	hc.CloseIdleConnections()
	e.client.CloseIdleConnections()
	quietEnd := e.quietGoroutines()
	e.end(ctx, p, mon, e.opts.phase)

	for k, r := range results {
		var parts []string
		for _, s := range r.bad {
			p.check(false, "%s answered %s (want 4xx, INVALID_ARGUMENT or RESOURCE_EXHAUSTED) %d times", kinds[k].name, s, r.statuses[s])
		}
		for _, s := range slices.Sorted(maps.Keys(r.statuses)) {
			parts = append(parts, fmt.Sprintf("%s:%d", s, r.statuses[s]))
		}
		p.check(r.max <= time.Second, "%s took %s (bound 1s)", kinds[k].name, ms(r.max))
		p.note("%s (%d bytes): %d sent, statuses %s, slowest %s", kinds[k].name, len(kinds[k].body), r.n, strings.Join(parts, " "), ms(r.max))
	}
	slices.Sort(closedAfter)
	if len(closedAfter) > 0 {
		p.note("slow bodies: %d of %d connections closed by seer, after %s to %s", len(closedAfter), len(conns), ms(closedAfter[0]), ms(closedAfter[len(closedAfter)-1]))
	} else {
		p.note("slow bodies: none of %d connections closed by seer within the phase", len(conns))
	}
	bound := 2*controlP99 + 50*time.Millisecond
	p.check(p.st.p99 <= bound, "steady load p99 %s (bound: twice the control's %s + 50ms)", ms(p.st.p99), ms(controlP99))
	rise := p.rssPeak - p.rssStart
	p.check(rise <= 128*mib, "RSS rose %.0f MiB (bound 128 MiB)", rise/mib)
	p.check(quietEnd <= quietStart+8, "goroutines with the steady load paused: %.0f at the end, %.0f at the start", quietEnd, quietStart)
	serverDegraded := p.delta("seer_predict_degraded_total")
	probed := 0
	for _, pr := range e.probes.window(p.from, p.to) {
		if pr.answer {
			probed++
		}
	}
	// An abandoned query whose reads missed the retrieval deadline before
	// seer saw its client go is degraded indeed; one that seer counted as
	// degraded because its client went is the bug this looks for.
	extra := serverDegraded - float64(p.st.degraded+probed)
	p.check(extra <= float64(abandoned.Load())/20+float64(2*e.opts.c+4),
		"seer counted %.0f degraded queries, the steady load and the probes saw %d, of %d abandoned: abandoned queries were counted as degraded",
		serverDegraded, p.st.degraded+probed, abandoned.Load())
	p.note("RSS peak +%.0f MiB; goroutines with the steady load paused %.0f at the start, %.0f at the end", rise/mib, quietStart, quietEnd)
	p.note("%d requests abandoned; seer counted %.0f cancelled and %.0f degraded queries, the steady load and the probes saw %d and %d degraded",
		abandoned.Load(), p.delta("seer_predict_cancelled_total"), serverDegraded, p.st.degraded, probed)
}

// writeRecords writes every request of the steady load to records.csv in
// the work directory (the phase, its start and latency in milliseconds
// since the run began, its status, and whether it was degraded), and
// every probe to probes.csv (its time, status, and its inputs by node:
// read from Redis, degraded, absent; other defaults).
func (e *env) writeRecords(phases []*phaseResult) error {
	var b bytes.Buffer
	b.WriteString("phase,start_ms,latency_ms,status,degraded\n")
	for _, p := range phases {
		for _, r := range p.recs {
			fmt.Fprintf(&b, "%s,%.1f,%.2f,%d,%t\n", p.name, float64(r.start)/1e6, float64(r.latency)/1e6, r.status, r.degraded)
		}
	}
	if err := os.WriteFile(filepath.Join(e.work, "records.csv"), b.Bytes(), 0o644); err != nil {
		return err
	}
	b.Reset()
	b.WriteString("at_ms,status,redis1,redis2,redis3,degraded1,degraded2,degraded3,absent1,absent2,absent3,other\n")
	for _, p := range e.probes.window(0, e.since()) {
		fmt.Fprintf(&b, "%.1f,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d\n", float64(p.at)/1e6, p.status,
			p.redis[0], p.redis[1], p.redis[2], p.degraded[0], p.degraded[1], p.degraded[2], p.absent[0], p.absent[1], p.absent[2], p.other)
	}
	return os.WriteFile(filepath.Join(e.work, "probes.csv"), b.Bytes(), 0o644)
}
