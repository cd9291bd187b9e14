package retrieval

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/seer-ml/seer/features"
)

// ErrFlags is wrapped by every error that rejects a change of the cache's
// rollout flags: an unknown mode or feature, a percentage out of range.
var ErrFlags = errors.New("bad cache flags")

// Cache modes, as the configuration, the catalog and the admin endpoint
// name them (see features.CacheOff and friends).
const (
	CacheOff    = features.CacheOff
	CacheShadow = features.CacheShadow
	CacheLive   = features.CacheLive
)

// Flags are the cache's rollout flags: which features are cached and how.
// They start from the configuration and change at run time through Update
// and Reconfigure.
type Flags struct {
	// Enabled is the kill switch: false turns every feature's caching off.
	Enabled bool `json:"enabled"`
	// Mode is the mode of every batch feature that names none of its own.
	Mode string `json:"mode"`
	// LivePercent is the share of requests, 0 to 100, that read live
	// features from the cache; the others read them from Redis and compare
	// in the background, as in shadow mode.
	LivePercent int `json:"live_percent"`
	// Features override the mode or percentage of single features, above
	// the catalog's own cache settings.
	Features map[string]FeatureFlags `json:"features"`
}

// FeatureFlags are one feature's overrides. An empty Mode or a nil
// LivePercent leaves that setting to the catalog and the defaults.
type FeatureFlags struct {
	Mode        string `yaml:"mode" json:"mode,omitempty"`
	LivePercent *int   `yaml:"live_percent" json:"live_percent,omitempty"`
}

// FlagsUpdate is a partial change of the flags, as PUT /v1/admin/cache
// takes it: fields left out stay as they are; a feature set to null loses
// its overrides.
type FlagsUpdate struct {
	Enabled     *bool                    `json:"enabled"`
	Mode        *string                  `json:"mode"`
	LivePercent *int                     `json:"live_percent"`
	Features    map[string]*FeatureFlags `json:"features"`
}

// Modes inside the cache; modeDefault means "not set here".
const (
	modeDefault uint8 = iota
	modeOff
	modeShadow
	modeLive
)

var modeNames = [...]string{modeDefault: "", modeOff: CacheOff, modeShadow: CacheShadow, modeLive: CacheLive}

func parseMode(s string) (uint8, error) {
	switch s {
	case "":
		return modeDefault, nil
	case CacheOff:
		return modeOff, nil
	case CacheShadow:
		return modeShadow, nil
	case CacheLive:
		return modeLive, nil
	}
	return 0, fmt.Errorf("%w: mode %q (want off, shadow or live)", ErrFlags, s)
}

func checkPercent(p int) error {
	if p < 0 || p > 100 {
		return fmt.Errorf("%w: live_percent %d is not between 0 and 100", ErrFlags, p)
	}
	return nil
}

// Where a feature's mode comes from, as the admin endpoint reports it.
const (
	sourceFlag     = "flag"     // Flags.Features
	sourceCatalog  = "catalog"  // the feature's cache.mode
	sourceDefault  = "default"  // Flags.Mode, for a batch feature
	sourceRealtime = "realtime" // no upload marker: off unless set
	sourceKill     = "disabled" // the kill switch
)

// featFlag is one feature's compiled overrides.
type featFlag struct {
	mode    uint8 // modeDefault: none
	source  string
	percent int // -1: none
}

// flagSnap is an immutable, compiled copy of the flags and the time
// settings that can change at run time. Fetch loads it once.
type flagSnap struct {
	flags    Flags
	def      uint8
	feat     []featFlag // by catalog index
	ttl      time.Duration
	realtime time.Duration
	negative time.Duration
	any      bool // some feature may be cached
}

// compile checks the flags against the catalog and compiles them.
func compileFlags(c *features.Catalog, f Flags, ttl, realtime, negative time.Duration) (*flagSnap, error) {
	def, err := parseMode(f.Mode)
	if err != nil {
		return nil, err
	}
	if def == modeDefault {
		def = modeOff
	}
	if err := checkPercent(f.LivePercent); err != nil {
		return nil, err
	}
	s := &flagSnap{flags: f, def: def, feat: make([]featFlag, len(c.Specs)), ttl: ttl, realtime: realtime, negative: negative}
	s.flags.Features = maps.Clone(f.Features)
	if s.flags.Features == nil {
		s.flags.Features = map[string]FeatureFlags{}
	}
	for i, spec := range c.Specs {
		ff := featFlag{percent: -1}
		if spec.Cache.Mode != "" {
			m, err := parseMode(spec.Cache.Mode)
			if err != nil {
				return nil, fmt.Errorf("feature %s: %w", spec.Name, err)
			}
			ff.mode, ff.source = m, sourceCatalog
		}
		s.feat[i] = ff
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(f.Features)) {
		o := f.Features[name]
		spec := c.Spec(name)
		if spec == nil {
			errs = append(errs, fmt.Errorf("%w: features: %q is not in the catalog", ErrFlags, name))
			continue
		}
		ff := &s.feat[spec.Index]
		if o.Mode != "" {
			m, err := parseMode(o.Mode)
			if err != nil {
				errs = append(errs, fmt.Errorf("features.%s: %w", name, err))
				continue
			}
			ff.mode, ff.source = m, sourceFlag
		}
		if o.LivePercent != nil {
			if err := checkPercent(*o.LivePercent); err != nil {
				errs = append(errs, fmt.Errorf("features.%s: %w", name, err))
				continue
			}
			ff.percent = *o.LivePercent
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.any = f.Enabled && (def != modeOff || slices.ContainsFunc(s.feat, func(ff featFlag) bool {
		return ff.mode == modeShadow || ff.mode == modeLive
	}))
	return s, nil
}

// resolve returns a feature's mode, live percentage and the mode's source.
// A feature without an upload marker (batch false) is real-time: only its
// own flag or catalog setting turns its caching on.
func (s *flagSnap) resolve(index int, batch bool) (mode uint8, percent int, source string) {
	if !s.flags.Enabled {
		return modeOff, 0, sourceKill
	}
	ff := s.feat[index]
	percent = s.flags.LivePercent
	if ff.percent >= 0 {
		percent = ff.percent
	}
	switch {
	case ff.mode != modeDefault:
		return ff.mode, percent, ff.source
	case batch:
		return s.def, percent, sourceDefault
	}
	return modeOff, percent, sourceRealtime
}

// featureTTL returns how long a feature's values may stay cached.
func (s *flagSnap) featureTTL(spec *features.Spec, batch bool) time.Duration {
	switch {
	case spec.Cache.TTL > 0:
		return spec.Cache.TTL
	case batch:
		return s.ttl
	}
	return s.realtime
}

// apply returns the flags f with the update u applied.
func (u FlagsUpdate) apply(f Flags) Flags {
	f.Features = maps.Clone(f.Features)
	if f.Features == nil {
		f.Features = map[string]FeatureFlags{}
	}
	if u.Enabled != nil {
		f.Enabled = *u.Enabled
	}
	if u.Mode != nil {
		f.Mode = *u.Mode
	}
	if u.LivePercent != nil {
		f.LivePercent = *u.LivePercent
	}
	for name, o := range u.Features {
		if o == nil || (o.Mode == "" && o.LivePercent == nil) {
			delete(f.Features, name)
			continue
		}
		f.Features[name] = *o
	}
	return f
}

// String describes the flags in one line, for logs.
func (f Flags) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "enabled=%t mode=%s live_percent=%d", f.Enabled, orOff(f.Mode), f.LivePercent)
	for _, name := range slices.Sorted(maps.Keys(f.Features)) {
		o := f.Features[name]
		fmt.Fprintf(&b, " %s=", name)
		if o.Mode != "" {
			b.WriteString(o.Mode)
		}
		if o.LivePercent != nil {
			fmt.Fprintf(&b, "@%d%%", *o.LivePercent)
		}
	}
	return b.String()
}

func orOff(mode string) string {
	if mode == "" {
		return CacheOff
	}
	return mode
}

// equalFlags reports whether two sets of flags are the same.
func equalFlags(a, b Flags) bool {
	return a.Enabled == b.Enabled && orOff(a.Mode) == orOff(b.Mode) && a.LivePercent == b.LivePercent &&
		maps.EqualFunc(a.Features, b.Features, func(x, y FeatureFlags) bool {
			return x.Mode == y.Mode && (x.LivePercent == nil) == (y.LivePercent == nil) &&
				(x.LivePercent == nil || *x.LivePercent == *y.LivePercent)
		})
}
