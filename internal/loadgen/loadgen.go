// Package loadgen drives a closed-loop load from c workers and measures
// it: request rate, latency percentiles, and the CPU time and allocations
// of the process that serves it. The load tools under tools/ use it.
package loadgen

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Result is one measured run.
type Result struct {
	Rate          float64 // successful requests per second
	P50, P99      time.Duration
	Errors, Total int           // failed and successful requests
	CPU           time.Duration // per successful request, of the process measured
	UserCPU       time.Duration // the part of CPU spent in user space, not in the kernel
	Allocs, Bytes float64       // per request, from the server's /metrics
}

// Run runs do from c workers for d and measures the CPU time of process
// pid (this one when 0; none when negative) and, when metrics is a URL of
// a Go process's Prometheus metrics, its allocations.
func Run(c int, d time.Duration, pid int, metrics string, do func() error) Result {
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	userBefore, before := ProcTimes(pid)
	allocs, bytes := memstats(metrics)
	start := time.Now()
	for range c {
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			for time.Now().Before(deadline) {
				t := time.Now()
				if err := do(); err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat, errs = append(lat, mine...), errs+bad
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	userAfter, after := ProcTimes(pid)
	spent, user := after-before, userAfter-userBefore
	allocs2, bytes2 := memstats(metrics)
	slices.Sort(lat)
	r := Result{Errors: errs, Total: len(lat)}
	if len(lat) > 0 {
		r.Rate = float64(len(lat)) / elapsed.Seconds()
		r.P50, r.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
		r.CPU = spent / time.Duration(len(lat))
		r.UserCPU = user / time.Duration(len(lat))
		r.Allocs = (allocs2 - allocs) / float64(len(lat)+errs)
		r.Bytes = (bytes2 - bytes) / float64(len(lat)+errs)
	}
	return r
}

// ProcCPU returns the CPU time (user and system) of process pid so far, of
// this process when pid is 0, and 0 when pid is negative or unreadable.
func ProcCPU(pid int) time.Duration {
	_, total := ProcTimes(pid)
	return total
}

// ProcTimes returns the CPU time of process pid so far in user space and
// in all (user and system), as ProcCPU does.
func ProcTimes(pid int) (user, total time.Duration) {
	switch {
	case pid < 0:
		return 0, 0
	case pid == 0:
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, 0
		}
		return time.Duration(ru.Utime.Nano()), time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// The fields after the command name, which is in parentheses.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		return 0, 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const tick = time.Second / 100 // USER_HZ
	return time.Duration(utime) * tick, time.Duration(utime+stime) * tick
}

// memstats returns the allocations and bytes allocated so far by the
// process whose Prometheus metrics are at url (go_memstats_mallocs_total,
// go_memstats_alloc_bytes_total); zeros when url is empty.
func memstats(url string) (allocs, bytes float64) {
	if url == "" {
		return 0, 0
	}
	resp, err := http.Get(url)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(data), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		switch name {
		case "go_memstats_mallocs_total":
			allocs, _ = strconv.ParseFloat(value, 64)
		case "go_memstats_alloc_bytes_total":
			bytes, _ = strconv.ParseFloat(value, 64)
		}
	}
	return allocs, bytes
}
