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

// How long a reload waits for a version whose file system call (resolving,
// opening, or reading a chunk of a file) has not returned:
// while serving, the reload moves on to the other versions and the load
// goes on in the background (a FIFO never gets this far: it is refused
// when opened); at start, a read stalled this long fails the start.
const (
	stallServing = 2 * time.Second
	stallStart   = 30 * time.Second
)

// maxAliasesSize caps the bytes of an alias file.
const maxAliasesSize = 64 << 10

// load is one version directory's load, running in its own goroutine.
type load struct {
	stamp string
	fr    *fileReader
	done  chan struct{}
	v     *Version // set before done closes
	err   error
	// left is set when a reload stopped waiting for it; it then asks
	// Watch for another reload when it ends.
	left atomic.Bool
}

// Registry holds the current snapshot and reloads it.
type Registry struct {
	opt     Options
	catalog *features.Catalog
	log     *slog.Logger
	cur     atomic.Pointer[Snapshot]

	mu      sync.Mutex // serialises reloads
	failed  map[string]Failure
	stamps  map[string]string // dir -> stamp of a failed load, not retried until it changes
	loading map[string]*load  // dir -> a load a reload stopped waiting for
	wake    chan struct{}     // a load left behind has ended
	open    func(path string) (file, error)

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
		loading: make(map[string]*load), wake: make(chan struct{}, 1), open: openFile,
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

// Watch reloads every Poll until ctx ends, and as soon as a load that a
// reload stopped waiting for ends.
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
		case <-r.wake:
		}
		if err := r.Reload(); err != nil {
			r.log.Error("reload models", "err", err)
		}
	}
}

func (r *Registry) reload(strict bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cur.Load()
	fr, err := newFileReader(r.opt.Root)
	if err != nil {
		return err
	}
	fr.open = r.open
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
		l := r.loading[d.dir]
		if l == nil || l.stamp != stamp {
			l = r.start(fr.root, d.dir, stamp)
		}
		stall := stallServing
		if strict {
			stall = stallStart
		}
		if !r.await(l, stall) {
			if strict {
				return fmt.Errorf("model %s version %s: reading its files has stalled for %s", d.model, d.version, stall)
			}
			r.loading[d.dir] = l
			next.failures = append(next.failures, Failure{Dir: d.dir, At: time.Now(), Error: []string{
				fmt.Sprintf("still loading: reading its files has stalled for %s; the version is used when it loads", l.fr.stalledFor().Round(time.Second)),
			}})
			if v != nil {
				addVersion(next, v)
			}
			continue
		}
		delete(r.loading, d.dir)
		nv, err := l.v, l.err
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
		for _, w := range nv.Warnings {
			r.log.Warn("model version", "model", nv.Name, "version", nv.Version, "warning", w)
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
	for dir := range r.loading {
		if !seen[dir] {
			delete(r.loading, dir)
		}
	}
	n := 0
	for _, m := range next.models {
		slices.SortFunc(m.Versions, func(a, b *Version) int { return compareVersions(a.Version, b.Version) })
		aliases, err := readAliases(fr, filepath.Join(r.opt.Root, m.Name, AliasFile))
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
	if err := r.resolveShadows(fr, next, old, strict); err != nil {
		return err
	}
	slices.SortFunc(next.failures, func(a, b Failure) int { return cmp.Compare(a.Dir, b.Dir) })
	r.versions.Set(float64(n))
	r.cur.Store(next)
	return nil
}

// start loads the version in dir in a goroutine of its own.
func (r *Registry) start(root, dir, stamp string) *load {
	l := &load{stamp: stamp, fr: &fileReader{root: root, open: r.open}, done: make(chan struct{})}
	go func() {
		l.v, l.err = loadVersion(l.fr, dir, r.catalog)
		close(l.done)
		// After done closes: a reload that stops waiting sets left and
		// then looks at done, so one of the two sees the other.
		if l.left.Load() {
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
	}()
	return l
}

// await waits for l to end and reports whether it did. It stops waiting
// when one of l's file system calls has not returned for stall, so that a
// hung disk cannot hold a reload (and the versions after it) up, while a
// large artifact that is being read or parsed is waited for.
func (r *Registry) await(l *load, stall time.Duration) bool {
	if l.left.Load() { // left behind by an earlier reload: no more waiting
		select {
		case <-l.done:
			return true
		default:
			return false
		}
	}
	tick := time.NewTicker(stall / 20)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return true
		case <-tick.C:
			if l.fr.stalledFor() >= stall {
				l.left.Store(true)
				select { // it may have ended meanwhile
				case <-l.done:
					return true
				default:
					return false
				}
			}
		}
	}
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

// versionDirs lists <root>/<model>/<version>/ directories holding a
// manifest. Names starting with a dot are skipped (Kubernetes keeps its
// "..data" links and timestamped directories under such names); a symbolic
// link to a directory counts as one, and whether it stays inside the root
// is checked when its files are read, so that one that does not is
// reported rather than ignored.
func versionDirs(root string) ([]versionDir, error) {
	modelsDirs, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []versionDir
	for _, md := range modelsDirs {
		mdir := filepath.Join(root, md.Name())
		if strings.HasPrefix(md.Name(), ".") || !isDir(mdir, md) {
			continue
		}
		vds, err := os.ReadDir(mdir)
		if err != nil {
			return nil, err
		}
		for _, vd := range vds {
			dir := filepath.Join(mdir, vd.Name())
			if strings.HasPrefix(vd.Name(), ".") || !isDir(dir, vd) {
				continue
			}
			if _, err := os.Lstat(filepath.Join(dir, ManifestFile)); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			out = append(out, versionDir{model: md.Name(), version: vd.Name(), dir: dir})
		}
	}
	return out, nil
}

// isDir reports whether e, at path, is a directory or a symbolic link to one.
func isDir(path string, e fs.DirEntry) bool {
	if e.Type()&fs.ModeSymlink == 0 {
		return e.IsDir()
	}
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}

// dirStamp summarises the names, sizes and modification times of a
// directory's files and where its symbolic links lead, so that a
// Kubernetes volume update (a new "..data" target) changes it.
func dirStamp(dir string) string {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	ents, err := os.ReadDir(real)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	b.WriteString(real)
	b.WriteByte(';')
	for _, e := range ents {
		path := filepath.Join(real, e.Name())
		info, err := os.Lstat(path)
		if err != nil {
			continue
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			target, _ := filepath.EvalSymlinks(path)
			if ti, err := os.Stat(path); err == nil {
				info = ti
			}
			fmt.Fprintf(&b, "%s->%s:", e.Name(), target)
		}
		fmt.Fprintf(&b, "%s:%d:%d;", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return b.String()
}

// readAliases reads a model's alias file, as defensively as a version's
// files; a missing file is no aliases.
func readAliases(fr *fileReader, path string) (map[string]string, error) {
	data, err := fr.read(path, maxAliasesSize, 0, nil)
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
