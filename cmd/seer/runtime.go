package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// memoryRatio is the share of the container's memory limit that the Go
// memory limit takes by default: the rest is left to what the Go runtime
// does not count (the embedded store's buffers, cgo, thread stacks) and to
// the margin the kernel's OOM killer needs.
const memoryRatio = 0.9

// parseSize reads a byte count: an integer with an optional KiB, MiB, GiB
// or TiB suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for i, suffix := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = strings.TrimSpace(n), 1<<(10*(i+1))
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: want a positive number of bytes, optionally with KiB, MiB, GiB or TiB", s)
	}
	return n * mult, nil
}

// memoryLimit returns the Go memory limit memory_limit asks for (0: none)
// and where it comes from: a size, "off", or empty for the default, which
// is GOMEMLIMIT when set, else memoryRatio of the cgroup's memory limit
// when the process runs under one.
func memoryLimit(setting string, cgroup func() (uint64, error)) (int64, string, error) {
	switch setting {
	case "off":
		return 0, "off", nil
	case "":
		if os.Getenv("GOMEMLIMIT") != "" {
			return 0, "GOMEMLIMIT", nil
		}
		limit, err := cgroup()
		switch {
		case errors.Is(err, memlimit.ErrNoLimit), errors.Is(err, memlimit.ErrCgroupsNotSupported), err == nil && limit == 0:
			return 0, "none", nil
		case err != nil:
			return 0, "", fmt.Errorf("memory_limit: read the cgroup's limit: %w", err)
		}
		return int64(float64(limit) * memoryRatio), "cgroup", nil
	}
	n, err := parseSize(setting)
	if err != nil {
		return 0, "", fmt.Errorf("memory_limit: %w", err)
	}
	return n, "config", nil
}

// defaultGOGC is the GC percentage when neither the config nor GOGC sets
// one and a memory limit is in force. Measured under the floor's load
// (tools/bench_floor.sh's 200-candidate query at 8 concurrent requests;
// docs/performance.md, "The GC percentage"): going from Go's 100 to 200
// halves the collector's CPU per request for about a fifth more resident
// memory; beyond 200 the memory grows faster than the CPU falls. The heap
// may then grow to three times what is live, which the memory limit
// bounds; without a limit, nothing would, and Go's 100 stays.
const defaultGOGC = 200

// gcPercent returns the GC percentage the setting asks for (0: the
// default, which depends on whether a memory limit is in force) and where
// it comes from: the config, GOGC, or the default.
func gcPercent(setting int, limited bool) (int, string) {
	switch {
	case setting != 0:
		return setting, "config"
	case os.Getenv("GOGC") != "":
		return 0, "GOGC"
	case !limited:
		return 100, "default"
	}
	return defaultGOGC, "default"
}

// tuneRuntime sets the Go memory limit and GC percentage the config asks
// for, and logs what it set.
func tuneRuntime(cfg *Config, log *slog.Logger) error {
	limit, from, err := memoryLimit(cfg.MemoryLimit, memlimit.FromCgroup)
	if err != nil {
		return err
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	gogc, gogcFrom := gcPercent(cfg.GOGC, debug.SetMemoryLimit(-1) != math.MaxInt64)
	if gogc != 0 {
		debug.SetGCPercent(gogc)
	} else {
		gogc = debug.SetGCPercent(-1) // GOGC's, read back: Go has no getter
		debug.SetGCPercent(gogc)
	}
	log.Info("runtime", "memory_limit", debug.SetMemoryLimit(-1), "memory_limit_from", from, "gogc", gogc, "gogc_from", gogcFrom)
	return nil
}
