package retrieval

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/redis/go-redis/v9"

	"github.com/seer-ml/seer/features"
)

// ErrUpload is wrapped by errors of Upload that are not about the files'
// contents (those wrap features.ErrTable): unknown stores, failed writes,
// a generation that could not be switched.
var ErrUpload = errors.New("upload failed")

// Defaults of UploadOptions.
const (
	DefaultBatchSize = 500 // rows per pipeline
	DefaultPipelines = 2   // pipelines in flight per store
)

// UploadOptions tune Upload.
type UploadOptions struct {
	// BatchSize is the number of rows per pipeline (default DefaultBatchSize).
	BatchSize int
	// Pipelines is how many pipelines each store has in flight at once
	// (default DefaultPipelines), so that Redis works while the next
	// batch is read. Rows of one entity always go through the same one,
	// in file order.
	Pipelines int
	// Time stamps every value written, to the second; readers compare it
	// with features' max ages. Zero means the time the upload starts.
	Time time.Time
	// DryRun checks the files and writes nothing.
	DryRun bool
	// InPlace writes into the features' current generations instead of
	// new ones: values show as they are written, entities the files do not
	// name keep theirs, and a failed upload leaves what it wrote. For
	// small corrections; uploads of whole tables should not use it.
	InPlace bool
	// Progress, when not nil, is called about every ProgressEvery while
	// the files are read, and once at the end.
	Progress func(UploadProgress)
	// ProgressEvery is how often Progress is called (default 500ms).
	ProgressEvery time.Duration
	// GC, unless Skip is set, deletes older generations while the upload
	// runs (see CollectGarbage).
	GC     GCOptions
	SkipGC bool
}

// UploadProgress is how far an upload is.
type UploadProgress struct {
	File    string // the file being read
	Rows    int64  // rows read so far, in every file
	Values  int64  // values read so far
	Done    int64  // bytes of the files read so far (for Parquet, in proportion to its rows)
	Total   int64  // bytes of all files
	Elapsed time.Duration
}

// UploadStats says what an upload wrote (or, in a dry run, would write).
type UploadStats struct {
	Files    int              // files read
	PerFile  []FileStats      // rows and values of each file read
	Rows     int              // data rows in the files
	Values   int              // hash fields written
	Features []string         // features with at least one value, in catalog order
	Versions map[string]int64 // feature -> its upload version after the upload
	// Generations is the generation written on each store (none in a dry
	// run or in place).
	Generations map[string]uint32
	Elapsed     time.Duration
	// GC is what the collection of older generations did; GCError says
	// why it stopped, if it did (the upload does not fail for it).
	GC      GCStats
	GCError error
}

// FileStats is what one file of an upload held.
type FileStats struct {
	Path         string
	Rows, Values int
}

// UploadFile is Upload of one file.
func (r *Retriever) UploadFile(ctx context.Context, c *features.Catalog, entity, path string, opt UploadOptions) (UploadStats, error) {
	return r.Upload(ctx, c, entity, []string{path}, opt)
}

// Upload reads CSV, JSON Lines and Parquet files (the format comes from
// the extension; a directory stands for the part files in it, see
// PartFiles) and checks every row against the catalog features of entity.
// It streams: rows are written as they are read, with pipelined HSETs,
// each value to its feature's own store, stamped with the upload's time,
// into a new generation of each store's features that readers do not see.
// After the last row of the last file, it switches every feature that got
// a value to its new generation, one transaction per store, bumping the
// features' upload markers. When any row is bad, or a write fails, or ctx
// ends, nothing is switched: served values stay exactly as they were, and
// what was written becomes garbage that a later upload deletes.
//
// On success, this Retriever reads the new generations at once; other
// pods read them after their next marker poll.
func (r *Retriever) Upload(ctx context.Context, c *features.Catalog, entity string, paths []string, opt UploadOptions) (stats UploadStats, err error) {
	start := time.Now()
	defer func() { stats.Elapsed = time.Since(start) }()
	e := c.Entity(entity)
	if e == nil {
		return stats, fmt.Errorf("upload: %w: unknown entity type %q", features.ErrTable, entity)
	}
	files, err := PartFiles(paths)
	if err != nil {
		return stats, fmt.Errorf("upload: %w", err)
	}
	u := newUploader(r, c, e, opt, start)
	if !opt.DryRun {
		if err := u.begin(ctx, files); err != nil {
			return stats, err
		}
	}
	err = u.readAll(ctx, files)
	if !opt.DryRun {
		err = u.finish(err)
	}
	stats = u.stats()
	if err == nil && !opt.DryRun {
		stats.Versions, err = u.commit(ctx)
	}
	if u.gcDone != nil {
		<-u.gcDone
		stats.GC, stats.GCError = u.gcStats, u.gcErr
	}
	return stats, err
}

// PartFiles expands the paths of an upload: a file stands for itself, a
// directory for the files in it, in name order, as Spark and Hive write a
// table: files whose names start with "_" or "." (_SUCCESS, .crc
// checksums) are skipped, and every other one must have a known
// extension. A directory with a _temporary directory in it is refused: the
// job writing it has not finished.
func PartFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			if _, err := features.TableFormat(p); err != nil {
				return nil, err
			}
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, de := range entries {
			name := de.Name()
			if name == "_temporary" {
				return nil, fmt.Errorf("%s: holds _temporary: the job writing it has not finished", p)
			}
			if strings.HasPrefix(name, "_") || strings.HasPrefix(name, ".") {
				continue
			}
			full := filepath.Join(p, name)
			if de.IsDir() {
				return nil, fmt.Errorf("%s: a directory in a table's directory (partitioned tables are not supported)", full)
			}
			if _, err := features.TableFormat(name); err != nil {
				return nil, fmt.Errorf("%w (in the table directory %s)", err, p)
			}
			files = append(files, full)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no part files in the directory", p)
		}
	}
	return files, nil
}

// uploader is one Upload's state.
type uploader struct {
	r     *Retriever
	c     *features.Catalog
	e     *features.Entity
	opt   UploadOptions
	unix  int64
	start time.Time

	// Per store (index in r.stores): its generation, its writers.
	gens    []uint32
	ids     [][]uint32 // the entity's features in the store
	writers []*storeWriter
	// fields is the field each feature (by catalog index) is written to,
	// and fieldBulks the same in RESP (uploadwire.go).
	fields     []*string
	fieldBulks [][]byte

	source  string
	storeOf []int      // by catalog index: the feature's store, -1 when the retriever lacks it
	mu      sync.Mutex // guards gens, which renew reads
	counts  []int64    // values per feature, by catalog index
	rows    int64
	values  int64
	files   int
	perFile []FileStats

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // writers and the lease renewer

	gcDone  chan struct{}
	gcStats GCStats
	gcErr   error
}

func newUploader(r *Retriever, c *features.Catalog, e *features.Entity, opt UploadOptions, start time.Time) *uploader {
	if opt.BatchSize <= 0 {
		opt.BatchSize = DefaultBatchSize
	}
	if opt.Pipelines <= 0 {
		opt.Pipelines = DefaultPipelines
	}
	if opt.ProgressEvery <= 0 {
		opt.ProgressEvery = 500 * time.Millisecond
	}
	stamp := opt.Time
	if stamp.IsZero() {
		stamp = start
	}
	storeOf := make([]int, len(c.Specs))
	for _, s := range c.Specs {
		storeOf[s.Index] = -1
		if si, ok := r.byName[s.Store]; ok {
			storeOf[s.Index] = si
		}
	}
	return &uploader{
		r: r, c: c, e: e, opt: opt, unix: stamp.Unix(), start: start, storeOf: storeOf,
		gens: make([]uint32, len(r.stores)), ids: make([][]uint32, len(r.stores)),
		writers: make([]*storeWriter, len(r.stores)),
		fields:  make([]*string, len(c.Specs)), fieldBulks: make([][]byte, len(c.Specs)),
		counts: make([]int64, len(c.Specs)),
	}
}

// begin starts a generation on every store that holds features of the
// entity type, the writers and the lease renewer, and the collection of
// older generations.
func (u *uploader) begin(ctx context.Context, files []string) error {
	u.ctx, u.cancel = context.WithCancelCause(ctx)
	for _, s := range u.c.Specs {
		if s.Entity != u.e {
			continue
		}
		if si, ok := u.r.byName[s.Store]; ok {
			u.ids[si] = append(u.ids[si], s.ID)
		}
	}
	u.source = uploadSource(files)
	if !u.opt.InPlace {
		u.wg.Go(u.renew)
	}
	if !u.opt.SkipGC {
		// The collection runs beside the upload, under the caller's
		// context: a failed upload does not stop it.
		u.gcDone = make(chan struct{})
		go func() {
			defer close(u.gcDone)
			u.gcStats, u.gcErr = u.r.CollectGarbage(ctx, u.c, u.opt.GC)
		}()
	}
	return nil
}

// openStore starts the upload on store si when its first value comes: a
// new generation (or, in place, the store's current ones) and the
// pipelines.
func (u *uploader) openStore(si int) error {
	st := u.r.stores[si]
	if u.opt.InPlace {
		// Some records that do not parse keep the generation read
		// before; any other error stops the upload.
		if _, err := st.LoadGenerations(u.ctx); err != nil && !errors.Is(err, ErrGenerations) {
			return fmt.Errorf("%w: %w", ErrUpload, err)
		}
	} else {
		var patterns []string // the keys of the store's entity types
		for _, sp := range u.c.Specs {
			if sp.Store == st.name && !slices.Contains(patterns, sp.Entity.Pattern()) {
				patterns = append(patterns, sp.Entity.Pattern())
			}
		}
		g, err := st.beginGeneration(u.ctx, u.ids[si], u.source, u.start, patterns)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUpload, err)
		}
		u.mu.Lock()
		u.gens[si] = g
		u.mu.Unlock()
	}
	tab := st.gens.Load()
	for _, s := range u.c.Specs {
		if s.Entity != u.e || s.Store != st.name {
			continue
		}
		f := GenField(s.ID, u.gens[si])
		if u.opt.InPlace {
			f = *tab.field(s)
		}
		u.fields[s.Index] = &f
		u.fieldBulks[s.Index] = appendBulk(nil, f)
	}
	u.writers[si] = u.newStoreWriter(st)
	return nil
}

// generations returns the generations begun so far, by store.
func (u *uploader) generations() []uint32 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.gens)
}

// uploadSource names the files for the generation records.
func uploadSource(files []string) string {
	s := filepath.Base(files[0])
	if len(files) > 1 {
		s = fmt.Sprintf("%s and %d more", s, len(files)-1)
	}
	return s
}

// renew extends the leases of the upload's generations until it ends.
func (u *uploader) renew() {
	t := time.NewTicker(uploadRenew)
	defer t.Stop()
	for {
		select {
		case <-u.ctx.Done():
			return
		case now := <-t.C:
			for si, g := range u.generations() {
				if g == 0 {
					continue
				}
				if err := u.r.stores[si].renewGeneration(u.ctx, g, now); err != nil && u.ctx.Err() == nil {
					u.cancel(fmt.Errorf("%w: renew lease: %w", ErrUpload, err))
					return
				}
			}
		}
	}
}

// readAll reads every file and queues its rows.
func (u *uploader) readAll(ctx context.Context, files []string) error {
	if u.ctx != nil {
		ctx = u.ctx
	}
	var total int64
	sizes := make([]int64, len(files))
	for i, f := range files {
		if info, err := os.Stat(f); err == nil {
			sizes[i] = info.Size()
			total += info.Size()
		}
	}
	p := &progress{u: u, total: total, every: u.opt.ProgressEvery, next: time.Now().Add(u.opt.ProgressEvery)}
	for i, f := range files {
		p.file, p.size = f, sizes[i]
		rows, values := u.rows, u.values
		if err := u.readFile(ctx, f, p); err != nil {
			return err
		}
		p.base += sizes[i]
		u.files++
		u.perFile = append(u.perFile, FileStats{Path: f, Rows: int(u.rows - rows), Values: int(u.values - values)})
	}
	p.report(0, true)
	return nil
}

func (u *uploader) readFile(ctx context.Context, path string, p *progress) error {
	format, err := features.TableFormat(path)
	if err != nil {
		return fmt.Errorf("upload %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("upload %s: %w", path, err)
	}
	defer f.Close()
	var t *features.TableReader
	var counter *countingReader
	if format == features.FormatParquet {
		info, err := f.Stat()
		if err != nil {
			return fmt.Errorf("upload %s: %w", path, err)
		}
		t, err = features.NewParquetReader(f, info.Size(), filepath.Base(path), u.c, u.e.Name)
		if err != nil {
			return fmt.Errorf("upload %s: %w", path, err)
		}
	} else {
		counter = &countingReader{r: f}
		t, err = features.NewTableReader(bufio.NewReaderSize(counter, 256<<10), filepath.Base(path), format, u.c, u.e.Name)
		if err != nil {
			return fmt.Errorf("upload %s: %w", path, err)
		}
	}
	totalRows, _ := t.TotalRows()
	for n := 0; ; n++ {
		row, err := t.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("upload %s: %w", path, err)
		}
		if err := u.add(row); err != nil {
			return fmt.Errorf("upload %s: %w", path, err)
		}
		if n&1023 == 0 {
			if err := context.Cause(ctx); err != nil {
				return fmt.Errorf("upload %s: %w", path, err)
			}
			done := int64(0)
			if counter != nil {
				done = counter.n
			} else if totalRows > 0 {
				done = p.size * int64(n) / totalRows
			}
			p.report(done, false)
		}
	}
}

// add counts a row and, unless this is a dry run, queues its HSETs.
func (u *uploader) add(row *features.Row) error {
	u.rows++
	u.values += int64(len(row.Specs))
	for _, s := range row.Specs {
		if u.counts[s.Index] == 0 && u.storeOf[s.Index] < 0 {
			return fmt.Errorf("%w: feature %s: no store %q", ErrUpload, s.Name, s.Store)
		}
		u.counts[s.Index]++
	}
	if u.opt.DryRun || len(row.Specs) == 0 {
		return nil
	}
	first := u.storeOf[row.Specs[0].Index]
	single := true
	for _, s := range row.Specs {
		si := u.storeOf[s.Index]
		single = single && si == first
		if u.writers[si] == nil {
			if err := u.openStore(si); err != nil {
				return err
			}
		}
	}
	key := row.Key
	h := xxhash.Sum64String(key)
	u.writers[first].add(key, h, row, first, u)
	if single {
		return nil
	}
	for i, s := range row.Specs[1:] {
		si := u.storeOf[s.Index]
		// The first feature of each other store writes that store's HSET.
		if si != first && !slices.ContainsFunc(row.Specs[:i+1], func(p *features.Spec) bool { return u.storeOf[p.Index] == si }) {
			u.writers[si].add(key, h, row, si, u)
		}
	}
	return nil
}

// finish flushes the writers and waits for them; it returns the first
// error of the reading (err) or of the writes.
func (u *uploader) finish(err error) error {
	if err != nil {
		u.cancel(err)
	}
	for _, w := range u.writers {
		if w != nil {
			w.close()
		}
	}
	for _, w := range u.writers {
		if w != nil {
			w.wait()
		}
	}
	if err == nil {
		err = context.Cause(u.ctx)
	}
	if err != nil {
		u.abort()
	}
	return err
}

// abort stops the upload's goroutines and gives up its generations:
// their values become garbage.
func (u *uploader) abort() {
	if u.cancel != nil {
		u.cancel(context.Canceled)
	}
	u.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for si, g := range u.generations() {
		if g != 0 {
			_ = u.r.stores[si].abortGeneration(ctx, g, u.ids[si]) // a dead upload is collected after its lease anyway
		}
	}
}

// commit switches every feature that got a value to its new generation,
// store by store, and returns the features' new upload versions.
func (u *uploader) commit(ctx context.Context) (map[string]int64, error) {
	defer func() {
		u.cancel(context.Canceled)
		u.wg.Wait()
	}()
	versions := make(map[string]int64)
	now := time.Now()
	var switched []string
	for si, st := range u.r.stores {
		if u.writers[si] == nil {
			continue
		}
		var sw []Switch
		var names []string
		for _, s := range u.c.Specs {
			if s.Entity == u.e && s.Store == st.name && u.counts[s.Index] > 0 {
				sw = append(sw, Switch{ID: s.ID, Rows: u.counts[s.Index]})
				names = append(names, s.Name)
			}
		}
		var got []int64
		var err error
		switch {
		case u.opt.InPlace:
			got, err = st.bumpMarkers(ctx, sw)
		case len(sw) == 0:
			err = st.abortGeneration(ctx, u.gens[si], u.ids[si])
		default:
			got, err = st.switchGeneration(ctx, u.gens[si], sw, u.source, now)
		}
		if err != nil {
			if !u.opt.InPlace {
				for sj := si; sj < len(u.gens); sj++ {
					if g := u.gens[sj]; g != 0 {
						_ = u.r.stores[sj].abortGeneration(context.WithoutCancel(ctx), g, u.ids[sj])
					}
				}
			}
			if len(switched) > 0 {
				err = fmt.Errorf("%w (stores %s were switched already; roll their features back to undo)", err, strings.Join(switched, ", "))
			}
			return versions, fmt.Errorf("upload: %w: %w", ErrUpload, err)
		}
		if len(sw) > 0 {
			switched = append(switched, st.name)
		}
		for i, name := range names {
			versions[name] = got[i]
		}
		if _, err := st.LoadGenerations(ctx); err != nil {
			return versions, fmt.Errorf("upload: switched, but %w", err)
		}
	}
	return versions, nil
}

// stats reports what was read and written.
func (u *uploader) stats() UploadStats {
	st := UploadStats{Files: u.files, PerFile: u.perFile, Rows: int(u.rows), Values: int(u.values)}
	for _, s := range u.c.Specs {
		if u.counts[s.Index] > 0 {
			st.Features = append(st.Features, s.Name)
		}
	}
	if !u.opt.DryRun && !u.opt.InPlace {
		st.Generations = make(map[string]uint32)
		for si, g := range u.gens {
			if g != 0 {
				st.Generations[u.r.stores[si].name] = g
			}
		}
	}
	return st
}

// progress calls UploadOptions.Progress at most every so often.
type progress struct {
	u          *uploader
	file       string
	base, size int64 // bytes of the files before this one, and of this one
	total      int64
	every      time.Duration
	next       time.Time
}

func (p *progress) report(done int64, final bool) {
	if p.u.opt.Progress == nil {
		return
	}
	now := time.Now()
	if !final && now.Before(p.next) {
		return
	}
	p.next = now.Add(p.every)
	pos := p.base + min(done, p.size)
	if final {
		pos = p.total
	}
	p.u.opt.Progress(UploadProgress{
		File: p.file, Rows: p.u.rows, Values: p.u.values,
		Done: pos, Total: p.total, Elapsed: now.Sub(p.u.start),
	})
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// storeWriter sends one store's HSETs through opt.Pipelines pipelines:
// in RESP written here when raw (see uploadwire.go), through go-redis
// otherwise.
type storeWriter struct {
	st      *Store
	u       *uploader
	raw     bool
	shards  []*writeShard
	free    chan *writeBatch
	scratch []byte // where add encodes a value when raw
}

// writeShard is one pipeline: the batch being filled and the goroutine
// that sends full ones.
type writeShard struct {
	cur  *writeBatch
	full chan *writeBatch
	done chan struct{}
	hw   hsetWires // when raw
}

// writeBatch is the HSETs of up to BatchSize rows, with the memory their
// arguments live in: when raw, in RESP, per node of the store (out, and n
// commands in each); otherwise as go-redis commands.
type writeBatch struct {
	out    [][]byte
	n      []int
	cmds   []redis.Cmder
	args   []any
	keys   []string
	vals   []string
	arena  []byte
	rows   int
	values int
}

func (u *uploader) newStoreWriter(st *Store) *storeWriter {
	n := u.opt.Pipelines
	w := &storeWriter{st: st, u: u, raw: st.rawHSETs(), free: make(chan *writeBatch, 2*n)}
	for range 2 * n {
		b := &writeBatch{}
		if w.raw {
			b.out, b.n = make([][]byte, len(st.nodes)), make([]int, len(st.nodes))
		}
		w.free <- b
	}
	for range n {
		sh := &writeShard{full: make(chan *writeBatch, 1), done: make(chan struct{}), hw: hsetWires{st: st}}
		w.shards = append(w.shards, sh)
		go w.send(sh)
	}
	return w
}

// add queues the HSET of the row's features that live in store si.
func (w *storeWriter) add(key string, h uint64, row *features.Row, si int, u *uploader) {
	sh := w.shards[h%uint64(len(w.shards))]
	b := sh.cur
	if b == nil {
		select {
		case b = <-w.free:
		case <-u.ctx.Done():
			return
		}
		sh.cur = b
	}
	if w.raw {
		w.addRaw(b, key, row, si, u)
	} else {
		w.addCmd(b, key, row, si, u)
	}
	if b.rows++; b.rows >= u.opt.BatchSize {
		sh.full <- b
		sh.cur = nil
	}
}

// addRaw appends the row's HSET in RESP to the batch's commands for the
// key's node.
func (w *storeWriter) addRaw(b *writeBatch, key string, row *features.Row, si int, u *uploader) {
	n := 0
	for _, s := range row.Specs {
		if u.storeOf[s.Index] == si {
			n++
		}
	}
	ni := w.st.nodeIndex(key)
	out := appendHSETHead(b.out[ni], key, n)
	for k, s := range row.Specs {
		if u.storeOf[s.Index] != si {
			continue
		}
		out = append(out, u.fieldBulks[s.Index]...)
		out, w.scratch = appendValue(out, w.scratch, row.Values[k], u.unix)
	}
	b.out[ni] = out
	b.n[ni]++
	b.values += n
}

// addCmd appends the row's HSET to the batch as a go-redis command.
func (w *storeWriter) addCmd(b *writeBatch, key string, row *features.Row, si int, u *uploader) {
	b.keys = append(b.keys, key)
	start := len(b.args)
	b.args = append(b.args, "hset", &b.keys[len(b.keys)-1])
	for k, s := range row.Specs {
		if u.storeOf[s.Index] != si {
			continue
		}
		off := len(b.arena)
		b.arena = features.EncodeStamped(b.arena, row.Values[k], u.unix)
		// The value is read by go-redis as a string, without boxing a
		// slice per value; b.arena is not written again until the
		// batch's pipeline has returned (send resets it), and a grown
		// arena leaves the old one to the strings that point into it.
		b.vals = append(b.vals, unsafe.String(unsafe.SliceData(b.arena[off:]), len(b.arena)-off))
		b.args = append(b.args, u.fields[s.Index], &b.vals[len(b.vals)-1])
		b.values++
	}
	b.cmds = append(b.cmds, redis.NewIntCmd(u.ctx, b.args[start:len(b.args):len(b.args)]...))
}

// send runs the pipelines of one shard until its channel closes.
func (w *storeWriter) send(sh *writeShard) {
	defer close(sh.done)
	defer sh.hw.close()
	for b := range sh.full {
		if w.u.ctx.Err() == nil {
			var err error
			if w.raw {
				for ni, out := range b.out {
					if b.n[ni] > 0 && err == nil {
						err = sh.hw.send(ni, out, b.n[ni])
					}
				}
			} else {
				pipe := w.st.client.Pipeline()
				_ = pipe.BatchProcess(w.u.ctx, b.cmds...)
				_, err = pipe.Exec(w.u.ctx)
			}
			if err != nil {
				w.u.cancel(fmt.Errorf("%w: hset store %s: %w", ErrUpload, w.st.name, err))
			} else {
				w.u.r.upload.WithLabelValues(w.st.name).Add(float64(b.values))
			}
		}
		b.reset()
		w.free <- b
	}
}

func (b *writeBatch) reset() {
	for i, out := range b.out {
		if cap(out) > maxKeptBuffer {
			out = nil
		}
		b.out[i], b.n[i] = out[:0], 0
	}
	clear(b.cmds)
	clear(b.args)
	clear(b.keys)
	clear(b.vals)
	b.cmds, b.args, b.keys, b.vals, b.arena = b.cmds[:0], b.args[:0], b.keys[:0], b.vals[:0], b.arena[:0]
	b.rows, b.values = 0, 0
}

// close sends the batches being filled and closes the shards.
func (w *storeWriter) close() {
	for _, sh := range w.shards {
		if sh.cur != nil && sh.cur.rows > 0 {
			sh.full <- sh.cur
		}
		sh.cur = nil
		close(sh.full)
	}
}

func (w *storeWriter) wait() {
	for _, sh := range w.shards {
		<-sh.done
	}
}

// bumpMarkers increments the upload markers of the given features and
// returns their new versions.
func (s *Store) bumpMarkers(ctx context.Context, sw []Switch) ([]int64, error) {
	if len(sw) == 0 {
		return nil, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(sw))
	for i, x := range sw {
		cmds[i] = pipe.HIncrBy(ctx, MarkerKey, GenField(x.ID, 0), 1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("bump markers on store %s: %w", s.name, err)
	}
	out := make([]int64, len(sw))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}
