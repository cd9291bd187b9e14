package registry

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

// The files of a model version are read defensively, because anything can
// be dropped into a models root: only regular files are read; a symbolic
// link is followed only when the path it resolves to stays inside the
// models root (so that Kubernetes volumes, whose files are links into a
// "..data" directory of the same mount, keep working); the size is checked
// with fstat before a byte is read; the first bytes are checked before the
// rest is read; and the rest is read into one buffer of the file's size.
// Opening is non-blocking, so a FIFO is refused instead of waiting for a
// writer, and every file system call is timed, so that a load stuck on a
// hung disk can be left behind (see Registry.await).

// errNotRegular is wrapped when a version's file is not a regular file.
var errNotRegular = errors.New("not a regular file")

// errOutsideRoot is wrapped when a path resolves outside the models root.
var errOutsideRoot = errors.New("outside the models root")

// readChunk is the most one read call asks for, so that a read's progress
// can be watched.
const readChunk = 4 << 20

// file is what fileReader needs of an open file.
type file interface {
	io.ReadCloser
	Stat() (fs.FileInfo, error)
}

// openFile opens a file that read has resolved, refusing a symbolic link
// swapped in since (O_NOFOLLOW) and without waiting for a FIFO's writer
// (O_NONBLOCK, which does not change how a regular file reads).
func openFile(path string) (file, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
}

// fileReader reads the files of model versions under one models root.
type fileReader struct {
	root string // the models root, its symbolic links resolved
	open func(path string) (file, error)
	// busySince is when the file system call running now began (Unix
	// nanoseconds), or 0 when none is: resolving links, opening, or one
	// read of at most readChunk bytes.
	busySince atomic.Int64
}

// newFileReader returns a reader of the files under root.
func newFileReader(root string) (*fileReader, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("models root: %w", err)
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return nil, fmt.Errorf("models root: %w", err)
	}
	return &fileReader{root: real, open: openFile}, nil
}

// resolve returns path with its symbolic links resolved, or an error
// wrapping errOutsideRoot when that leaves the models root.
func (fr *fileReader) resolve(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	if real, err = filepath.Abs(real); err != nil {
		return "", err
	}
	rel, err := filepath.Rel(fr.root, real)
	if err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%s resolves to %s, %w %s", filepath.Base(path), real, errOutsideRoot, fr.root)
	}
	return real, nil
}

// read returns the content of the regular file at path, which must stay
// inside the models root and hold at most limit bytes. When check is not
// nil it is given the file's first bytes (up to head of them) before the
// rest is read, and its error stops the read.
func (fr *fileReader) read(path string, limit int64, head int, check func(head []byte) error) ([]byte, error) {
	fr.busySince.Store(time.Now().UnixNano())
	defer fr.busySince.Store(0)
	real, err := fr.resolve(path)
	if err != nil {
		return nil, err
	}
	f, err := fr.open(real)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %w (%s)", filepath.Base(path), errNotRegular, describeMode(info.Mode()))
	}
	size := info.Size()
	if size > limit {
		return nil, fmt.Errorf("%s holds %d bytes, over the limit of %d", filepath.Base(path), size, limit)
	}
	// The first bytes, checked before the buffer for the whole file is
	// made; then the rest, into that buffer of the file's size.
	first := make([]byte, min(size, int64(head)))
	n, err := fr.readFull(f, first)
	if err == nil && check != nil {
		if err := check(first); err != nil {
			return nil, err
		}
	}
	buf := first
	if err == nil && int64(len(first)) < size {
		buf = bigBuffer(size)
		copy(buf, first)
		var m int
		m, err = fr.readFull(f, buf[len(first):])
		n += m
	}
	if err == nil {
		// One more byte: a file that grew while it was read is refused
		// like one that shrank.
		var one [1]byte
		if m, _ := fr.readFull(f, one[:]); m > 0 {
			err = fmt.Errorf("changed while it was read (it grew past %d bytes)", size)
		}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("changed while it was read (it ended after %d of %d bytes)", n, size)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return buf, nil
}

// bigBuffer returns a zeroed buffer of n bytes. It is a function of its
// own, never inlined, so that the compiler cannot fuse its make with the
// copy that follows into runtime.makeslicecopy: that call zeroes the
// whole buffer without a preemption point, and while a goroutine cannot
// be preempted the garbage collector's mark phase cannot end, nor can
// any request that must assist it. Zeroing 200 MiB took 1.1 s here,
// and every request stalled that long (docs/soak.md). make alone zeroes
// a large buffer in chunks, preemptible between them.
//
//go:noinline
func bigBuffer(n int64) []byte { return make([]byte, n) }

// readFull fills b from f in calls of at most readChunk bytes, noting when
// each call begins so that a stalled one can be seen. A file that ends
// first gives io.ErrUnexpectedEOF.
func (fr *fileReader) readFull(f io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		fr.busySince.Store(time.Now().UnixNano())
		m, err := f.Read(b[n:min(len(b), n+readChunk)])
		n += m
		if err == io.EOF {
			return n, io.ErrUnexpectedEOF
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// stalledFor returns how long the file system call running now has been
// running, or 0 when none is.
func (fr *fileReader) stalledFor() time.Duration {
	since := fr.busySince.Load()
	if since == 0 {
		return 0
	}
	return time.Since(time.Unix(0, since))
}

func describeMode(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}
