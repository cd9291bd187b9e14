// Package registry loads model versions from a models root, validates them,
// and serves immutable snapshots of them, swapped atomically when a poll
// finds new, changed or removed versions. A version that fails to load never
// replaces a good one.
//
// It imports features and models; it must not import retrieval or cmd.
package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/seer-ml/seer/features"
)

// Errors of the registry.
var (
	ErrUnknownModel   = errors.New("unknown model")
	ErrUnknownVersion = errors.New("unknown model version")
	ErrInvalid        = errors.New("invalid model version")
)

// AliasFile is the name of a model's alias file, beside its version
// directories: a YAML map from alias to version. The alias "production"
// pins the version that the bare model name means.
const AliasFile = "aliases.yaml"

// DefaultAlias is the alias that pins which version a bare name means.
const DefaultAlias = "production"

// Model is every loaded version of one model.
type Model struct {
	Name     string
	Versions []*Version // ascending
	Aliases  map[string]string
	Default  *Version
	// Shadows are the versions that score every query to the model in
	// shadow, as its shadows.yaml lists them, resolved in the snapshot.
	Shadows []*Version

	shadowRefs []string // the list as read
}

// Failure is a version directory that did not load.
type Failure struct {
	Dir   string    `json:"dir"`
	Error []string  `json:"errors"`
	At    time.Time `json:"at"`
}

// Snapshot is an immutable view of the loaded models.
type Snapshot struct {
	models   map[string]*Model
	failures []Failure
}

// Resolve returns the version a reference means: "name" (the version its
// production alias pins, else the highest), "name@version" or "name@alias".
func (s *Snapshot) Resolve(ref string) (*Version, error) {
	name, ver, pinned := strings.Cut(ref, "@")
	m := s.models[name]
	if m == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownModel, name)
	}
	if !pinned {
		if m.Default == nil {
			return nil, fmt.Errorf("%w %q: no version is loaded", ErrUnknownModel, name)
		}
		return m.Default, nil
	}
	if v, ok := m.Aliases[ver]; ok {
		ver = v
	}
	for _, v := range m.Versions {
		if v.Version == ver {
			return v, nil
		}
	}
	return nil, fmt.Errorf("%w %q of model %q", ErrUnknownVersion, ver, name)
}

// Models returns the loaded models ordered by name.
func (s *Snapshot) Models() []*Model {
	out := make([]*Model, 0, len(s.models))
	for _, m := range s.models {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *Model) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Failures returns the version directories that failed to load at the last
// poll that looked at them.
func (s *Snapshot) Failures() []Failure { return s.failures }

// Options configure a Registry.
type Options struct {
	Root    string        // the models root: <root>/<model>/<version>/
	Poll    time.Duration // reload interval for Watch; 0 disables
	Logger  *slog.Logger
	Metrics prometheus.Registerer // may be nil
}

// Registry holds the current snapshot and reloads it.
type Registry struct {
	opt     Options
	catalog *features.Catalog
	log     *slog.Logger
	cur     atomic.Pointer[Snapshot]

	mu     sync.Mutex // serialises reloads
	failed map[string]Failure
	stamps map[string]string // dir -> stamp of a failed load, not retried until it changes

	loads    *prometheus.CounterVec
	versions prometheus.Gauge
}

// Open loads every version under the root. At start nothing may fail: the
// first problem found is returned, so that a bad model stops the service
// before it serves.
func Open(c *features.Catalog, opt Options) (*Registry, error) {
	r := &Registry{
		opt: opt, catalog: c, log: opt.Logger,
		failed: make(map[string]Failure), stamps: make(map[string]string),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_registry_loads_total",
			Help: "Model version loads by result (ok, failed).",
		}, []string{"result"}),
		versions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "seer_registry_versions",
			Help: "Model versions loaded.",
		}),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if opt.Metrics != nil {
		opt.Metrics.MustRegister(r.loads, r.versions)
	}
	r.cur.Store(&Snapshot{models: map[string]*Model{}})
	if err := r.reload(true); err != nil {
		return nil, err
	}
	return r, nil
}

// Snapshot returns the current snapshot. It never blocks.
func (r *Registry) Snapshot() *Snapshot { return r.cur.Load() }

// Reload looks at the models root once: new and changed versions load,
// removed ones unload, failures are recorded and keep what served before.
func (r *Registry) Reload() error { return r.reload(false) }

// Watch reloads every Poll until ctx ends.
func (r *Registry) Watch(ctx context.Context) {
	if r.opt.Poll <= 0 {
		return
	}
	t := time.NewTicker(r.opt.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Reload(); err != nil {
				r.log.Error("reload models", "err", err)
			}
		}
	}
}

func (r *Registry) reload(strict bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cur.Load()
	dirs, err := versionDirs(r.opt.Root)
	if err != nil {
		return fmt.Errorf("read models root: %w", err)
	}
	loaded := make(map[string]*Version) // dir -> version
	for _, m := range old.models {
		for _, v := range m.Versions {
			loaded[v.Dir] = v
		}
	}
	next := &Snapshot{models: make(map[string]*Model)}
	seen := make(map[string]bool)
	for _, d := range dirs {
		seen[d.dir] = true
		stamp := dirStamp(d.dir)
		v := loaded[d.dir]
		if v != nil && v.stamp == stamp {
			addVersion(next, v)
			continue
		}
		if f, ok := r.failed[d.dir]; ok && r.stamps[d.dir] == stamp {
			if v != nil {
				addVersion(next, v) // a broken change keeps the good version serving
			}
			next.failures = append(next.failures, f)
			continue
		}
		nv, err := LoadVersion(d.dir, r.catalog)
		if err != nil {
			r.loads.WithLabelValues("failed").Inc()
			if strict {
				return fmt.Errorf("model %s version %s: %w", d.model, d.version, err)
			}
			f := Failure{Dir: d.dir, Error: ProblemLines(err), At: time.Now()}
			r.failed[d.dir], r.stamps[d.dir] = f, stamp
			next.failures = append(next.failures, f)
			r.log.Error("load model version", "model", d.model, "version", d.version, "err", err, "serving_previous", v != nil)
			if v != nil {
				addVersion(next, v)
			}
			continue
		}
		nv.stamp = stamp
		delete(r.failed, d.dir)
		delete(r.stamps, d.dir)
		r.loads.WithLabelValues("ok").Inc()
		if v != nil {
			r.log.Info("reloaded model version", "model", nv.Name, "version", nv.Version)
		} else if !strict {
			r.log.Info("loaded model version", "model", nv.Name, "version", nv.Version)
		}
		addVersion(next, nv)
	}
	for dir, v := range loaded {
		if !seen[dir] {
			r.log.Info("unloaded model version", "model", v.Name, "version", v.Version)
		}
	}
	for dir := range r.failed {
		if !seen[dir] {
			delete(r.failed, dir)
			delete(r.stamps, dir)
		}
	}
	n := 0
	for _, m := range next.models {
		slices.SortFunc(m.Versions, func(a, b *Version) int { return compareVersions(a.Version, b.Version) })
		aliases, err := readAliases(filepath.Join(r.opt.Root, m.Name, AliasFile))
		if err != nil {
			if strict {
				return fmt.Errorf("model %s: %w", m.Name, err)
			}
			next.failures = append(next.failures, Failure{Dir: filepath.Join(r.opt.Root, m.Name), Error: []string{err.Error()}, At: time.Now()})
		}
		m.Aliases = aliases
		m.Default = r.pickDefault(m, old.models[m.Name], &next.failures)
		n += len(m.Versions)
	}
	if err := r.resolveShadows(next, old, strict); err != nil {
		return err
	}
	slices.SortFunc(next.failures, func(a, b Failure) int { return cmp.Compare(a.Dir, b.Dir) })
	r.versions.Set(float64(n))
	r.cur.Store(next)
	return nil
}

// pickDefault returns the version a bare name means: the pinned one when it
// is loaded, else the one that served before when it still is, else the
// highest.
func (r *Registry) pickDefault(m, prev *Model, failures *[]Failure) *Version {
	find := func(ver string) *Version {
		for _, v := range m.Versions {
			if v.Version == ver {
				return v
			}
		}
		return nil
	}
	if pin, ok := m.Aliases[DefaultAlias]; ok {
		if v := find(pin); v != nil {
			return v
		}
		*failures = append(*failures, Failure{
			Dir:   filepath.Join(r.opt.Root, m.Name, AliasFile),
			Error: []string{fmt.Sprintf("alias %s pins version %q, which is not loaded", DefaultAlias, pin)},
			At:    time.Now(),
		})
		if prev != nil && prev.Default != nil {
			if v := find(prev.Default.Version); v != nil {
				return v
			}
		}
	}
	return m.Versions[len(m.Versions)-1]
}

func addVersion(s *Snapshot, v *Version) {
	m := s.models[v.Name]
	if m == nil {
		m = &Model{Name: v.Name}
		s.models[v.Name] = m
	}
	m.Versions = append(m.Versions, v)
}

type versionDir struct{ model, version, dir string }

// versionDirs lists <root>/<model>/<version>/ directories holding a manifest.
func versionDirs(root string) ([]versionDir, error) {
	modelsDirs, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []versionDir
	for _, md := range modelsDirs {
		if !md.IsDir() || strings.HasPrefix(md.Name(), ".") {
			continue
		}
		vds, err := os.ReadDir(filepath.Join(root, md.Name()))
		if err != nil {
			return nil, err
		}
		for _, vd := range vds {
			if !vd.IsDir() || strings.HasPrefix(vd.Name(), ".") {
				continue
			}
			dir := filepath.Join(root, md.Name(), vd.Name())
			if _, err := os.Stat(filepath.Join(dir, ManifestFile)); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			out = append(out, versionDir{model: md.Name(), version: vd.Name(), dir: dir})
		}
	}
	return out, nil
}

// dirStamp summarises the names, sizes and modification times of a
// directory's files.
func dirStamp(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return b.String()
}

func readAliases(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", AliasFile, err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch v := v.(type) {
		case string:
			out[k] = v
		case int:
			out[k] = strconv.Itoa(v)
		default:
			return nil, fmt.Errorf("%s: alias %s: want a version, got %v", AliasFile, k, v)
		}
	}
	return out, nil
}

// compareVersions orders versions numerically when both are integers and
// as text otherwise; integers come first.
func compareVersions(a, b string) int {
	ai, aerr := strconv.ParseUint(a, 10, 64)
	bi, berr := strconv.ParseUint(b, 10, 64)
	switch {
	case aerr == nil && berr == nil:
		return cmp.Compare(ai, bi)
	case aerr == nil:
		return -1
	case berr == nil:
		return 1
	}
	return cmp.Compare(a, b)
}
