package retrieval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seer-ml/seer/features"
)

// ErrUpload is wrapped by errors of UploadFile that are not about the
// file's contents (those wrap features.ErrTable): unknown stores, a file
// that changed while it was written, failed writes.
var ErrUpload = errors.New("upload failed")

// DefaultBatchSize is the number of rows UploadFile writes per pipeline.
const DefaultBatchSize = 500

// UploadOptions tune UploadFile.
type UploadOptions struct {
	// BatchSize is the number of rows per pipeline (default DefaultBatchSize).
	BatchSize int
	// Time stamps every value written, to the second; readers compare it
	// with features' max ages. Zero means the time the upload starts.
	Time time.Time
	// DryRun checks the file and writes nothing.
	DryRun bool
}

// UploadStats says what an upload wrote (or, in a dry run, would write).
type UploadStats struct {
	Rows     int              // data rows in the file
	Values   int              // hash fields written
	Features []string         // features with at least one value, in catalog order
	Versions map[string]int64 // feature -> its upload version after the upload
}

// UploadFile validates a whole CSV or JSON Lines file (the format comes
// from the extension: .csv, .jsonl or .json) against the catalog features
// of entity, and writes nothing when any row is bad. Then it writes the
// rows with pipelined HSETs, in batches, each value to its feature's own
// store, stamped with the upload's time; and last it bumps the upload
// marker of every feature it wrote (see docs/format.md).
//
// The file is read twice, so that files larger than memory can be
// uploaded; it must not change in between. An error after the first batch
// was written leaves the earlier batches in place and the markers as they
// were: upload the file again.
func (r *Retriever) UploadFile(ctx context.Context, c *features.Catalog, entity, path string, opt UploadOptions) (UploadStats, error) {
	stats, info, err := r.checkUpload(c, entity, path)
	if err != nil || opt.DryRun {
		return stats, err
	}
	stamp := opt.Time
	if stamp.IsZero() {
		stamp = time.Now()
	}
	batch := opt.BatchSize
	if batch <= 0 {
		batch = DefaultBatchSize
	}
	written, err := r.writeUpload(ctx, c, entity, path, info, stamp.Unix(), batch)
	if err != nil {
		return stats, fmt.Errorf("upload %s: %w", path, err)
	}
	if written != stats.Rows {
		return stats, fmt.Errorf("upload %s: %w: the file changed while it was written (%d rows, then %d); upload it again", path, ErrUpload, stats.Rows, written)
	}
	if stats.Versions, err = r.bumpMarkers(ctx, c, stats.Features); err != nil {
		return stats, fmt.Errorf("upload %s: %w", path, err)
	}
	return stats, nil
}

// checkUpload reads the whole file once, checking every row, and counts
// what it would write.
func (r *Retriever) checkUpload(c *features.Catalog, entity, path string) (UploadStats, os.FileInfo, error) {
	var stats UploadStats
	fail := func(err error) (UploadStats, os.FileInfo, error) {
		return UploadStats{}, nil, fmt.Errorf("upload %s: %w", path, err)
	}
	format, err := features.TableFormat(path)
	if err != nil {
		return fail(err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	t, err := features.NewTableReader(f, filepath.Base(path), format, c, entity)
	if err != nil {
		return fail(err)
	}
	seen := make([]bool, len(c.Specs))
	for {
		row, err := t.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(err)
		}
		stats.Rows++
		stats.Values += len(row.Specs)
		for _, s := range row.Specs {
			if !seen[s.Index] {
				if r.Store(s.Store) == nil {
					return fail(fmt.Errorf("%w: feature %s: no store %q", ErrUpload, s.Name, s.Store))
				}
				seen[s.Index] = true
			}
		}
	}
	for _, s := range c.Specs {
		if seen[s.Index] {
			stats.Features = append(stats.Features, s.Name)
		}
	}
	return stats, info, nil
}

// writeUpload writes the file's rows in batches and returns how many rows
// it wrote.
func (r *Retriever) writeUpload(ctx context.Context, c *features.Catalog, entity, path string, before os.FileInfo, unix int64, batch int) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || info.Size() != before.Size() || !info.ModTime().Equal(before.ModTime()) {
		return 0, fmt.Errorf("%w: the file changed after it was checked; upload it again", ErrUpload)
	}
	format, _ := features.TableFormat(path)
	t, err := features.NewTableReader(f, filepath.Base(path), format, c, entity)
	if err != nil {
		return 0, err
	}
	w := &uploadWriter{r: r, cmds: make([][]redis.Cmder, len(r.stores)), counts: make([]int, len(r.stores))}
	rows, inBatch := 0, 0
	for {
		row, err := t.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rows, fmt.Errorf("%w: the file changed while it was written, after %d rows: %w", ErrUpload, rows, err)
		}
		w.add(ctx, t.Entity().Key(row.ID), row, unix)
		rows++
		if inBatch++; inBatch == batch {
			if err := w.flush(ctx); err != nil {
				return rows - inBatch, err
			}
			inBatch = 0
		}
	}
	if err := w.flush(ctx); err != nil {
		return rows - inBatch, err
	}
	return rows, nil
}

// uploadWriter queues one batch of HSETs per store.
type uploadWriter struct {
	r      *Retriever
	cmds   [][]redis.Cmder // per store
	counts []int           // values queued per store
	arena  []byte          // encoded values of the batch
}

// add queues the HSETs of one row: one per store its features live in.
func (w *uploadWriter) add(ctx context.Context, key string, row *features.Row, unix int64) {
	for i, s := range row.Specs {
		// The first feature of each store starts that store's HSET.
		if slices.ContainsFunc(row.Specs[:i], func(p *features.Spec) bool { return p.Store == s.Store }) {
			continue
		}
		args := []any{"hset", key}
		for k := i; k < len(row.Specs); k++ {
			if sk := row.Specs[k]; sk.Store == s.Store {
				start := len(w.arena)
				w.arena = features.EncodeStamped(w.arena, row.Values[k], unix)
				args = append(args, &sk.Field, w.arena[start:len(w.arena):len(w.arena)])
			}
		}
		si := w.r.byName[s.Store]
		w.cmds[si] = append(w.cmds[si], redis.NewIntCmd(ctx, args...))
		w.counts[si] += (len(args) - 2) / 2
	}
}

// flush writes the queued batch, store by store.
func (w *uploadWriter) flush(ctx context.Context) error {
	for si, cmds := range w.cmds {
		if len(cmds) == 0 {
			continue
		}
		st := w.r.stores[si]
		pipe := st.client.Pipeline()
		_ = pipe.BatchProcess(ctx, cmds...)
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("%w: hset store %s: %w", ErrUpload, st.name, err)
		}
		w.r.upload.WithLabelValues(st.name).Add(float64(w.counts[si]))
		clear(cmds)
		w.cmds[si], w.counts[si] = cmds[:0], 0
	}
	w.arena = w.arena[:0]
	return nil
}

// bumpMarkers increments the upload marker of each named feature on its
// store and returns the new versions.
func (r *Retriever) bumpMarkers(ctx context.Context, c *features.Catalog, names []string) (map[string]int64, error) {
	versions := make(map[string]int64, len(names))
	cmds := make(map[string]*redis.IntCmd, len(names))
	for si, st := range r.stores {
		pipe := st.client.Pipeline()
		for _, name := range names {
			s := c.Spec(name)
			if r.byName[s.Store] == si {
				cmds[name] = pipe.HIncrBy(ctx, MarkerKey, s.Field, 1)
			}
		}
		if pipe.Len() == 0 {
			continue
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("%w: bump markers on store %s: %w", ErrUpload, st.name, err)
		}
	}
	for name, cmd := range cmds {
		versions[name] = cmd.Val()
	}
	return versions, nil
}
