package featurelog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// output is the feature log's file, or stdout, behind a buffer. Only the
// Logger's goroutine uses it.
//
// Rotation is our own rather than a library's (lumberjack sizes files in
// whole megabytes and names rotated files by time): max_bytes is exact,
// a file never ends inside a line, and the rotated files have fixed names,
// PATH.1 the newest to PATH.keep, that a training job can list in order.
type output struct {
	path     string
	maxBytes int64
	keep     int
	std      io.Writer // set for "-": no file, no rotation

	f       *os.File
	w       *bufio.Writer
	size    int64     // bytes in the file, buffered ones included
	pending int       // lines buffered since the last flush
	retryAt time.Time // after a failed open, the next attempt
}

// result is what one write or flush did: lines that reached the file or
// were lost, whether the file rotated, and the error, if any.
type result struct {
	written, failed int
	rotated         bool
	err             error
}

const bufferSize = 64 << 10

// reopenDelay spaces attempts to open a file that failed to open.
const reopenDelay = time.Second

func newOutput(path string, maxBytes int64, keep int, std io.Writer) *output {
	o := &output{path: path, maxBytes: maxBytes, keep: keep, std: std}
	if std != nil {
		o.w = bufio.NewWriterSize(std, bufferSize)
	}
	return o
}

// open opens the file for appending, creating it and its directory.
func (o *output) open() error {
	if err := os.MkdirAll(filepath.Dir(o.path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(o.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	o.f, o.size = f, info.Size()
	if o.w == nil {
		o.w = bufio.NewWriterSize(f, bufferSize)
	} else {
		o.w.Reset(f)
	}
	return nil
}

// writeLine writes one line, rotating the file first when the line would
// take it past maxBytes.
func (o *output) writeLine(line []byte) result {
	var r result
	if o.std == nil {
		if o.f == nil {
			if time.Now().Before(o.retryAt) {
				return result{failed: 1}
			}
			if err := o.open(); err != nil {
				o.retryAt = time.Now().Add(reopenDelay)
				return result{failed: 1, err: fmt.Errorf("open: %w", err)}
			}
		}
		if o.size > 0 && o.size+int64(len(line)) > o.maxBytes {
			r = o.flush()
			if r.err != nil {
				r.failed++
				return r
			}
			if err := o.rotate(); err != nil {
				r.failed++
				r.err = fmt.Errorf("rotate: %w", err)
				return r
			}
			r.rotated = true
		}
	}
	if len(line) > o.w.Available() && o.w.Buffered() > 0 {
		fr := o.flush()
		r.written += fr.written
		r.failed += fr.failed
		if fr.err != nil {
			r.failed++
			r.err = fr.err
			return r
		}
	}
	if _, err := o.w.Write(line); err != nil {
		r.failed += o.pending + 1
		r.err = fmt.Errorf("write: %w", err)
		o.drop()
		return r
	}
	o.size += int64(len(line))
	o.pending++
	return r
}

// flush writes the buffered lines out.
func (o *output) flush() result {
	if o.w == nil || o.pending == 0 && o.w.Buffered() == 0 {
		return result{}
	}
	n := o.pending
	o.pending = 0
	if err := o.w.Flush(); err != nil {
		o.drop()
		return result{failed: n, err: fmt.Errorf("flush: %w", err)}
	}
	return result{written: n}
}

// drop forgets the buffer after a failed write: the file is closed and
// opened again at the next line; stdout keeps its writer.
func (o *output) drop() {
	o.pending = 0
	if o.std != nil {
		o.w.Reset(o.std)
		return
	}
	o.w.Reset(nil)
	if o.f != nil {
		o.f.Close()
		o.f = nil
	}
}

// rotate closes the file, shifts PATH.(i) to PATH.(i+1), dropping the
// oldest, moves PATH to PATH.1 and opens a new PATH.
func (o *output) rotate() error {
	if err := o.f.Close(); err != nil {
		o.f = nil
		return err
	}
	o.f = nil
	name := func(i int) string {
		if i == 0 {
			return o.path
		}
		return o.path + "." + strconv.Itoa(i)
	}
	if o.keep == 0 {
		if err := os.Remove(o.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	for i := o.keep - 1; i >= 0; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return o.open()
}

// close flushes and closes the file.
func (o *output) close() error {
	r := o.flush()
	err := r.err
	if o.f != nil {
		err = errors.Join(err, o.f.Close())
		o.f = nil
	}
	if err != nil {
		return fmt.Errorf("feature log: %w", err)
	}
	return nil
}
