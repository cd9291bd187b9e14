package retrieval

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
)

// errReply is wrapped by errors for replies that are not the array of bulk
// strings HMGET answers with.
var errReply = errors.New("unexpected reply")

// splitReply parses a raw RESP reply to HMGET into vals, one slice of raw
// per field: the value's bytes, or nil for a missing field. An error reply
// or a malformed one is an error.
func splitReply(raw []byte, vals [][]byte) error {
	line, rest, err := respLine(raw)
	if err != nil {
		return err
	}
	switch line[0] {
	case '*':
	case '-':
		return fmt.Errorf("%w: %s", errReply, line[1:])
	default:
		return fmt.Errorf("%w: %.40q", errReply, line)
	}
	n, err := respInt(line[1:])
	if err != nil || n != len(vals) {
		return fmt.Errorf("%w: array of %.20s items for %d fields", errReply, line[1:], len(vals))
	}
	for k := range vals {
		if line, rest, err = respLine(rest); err != nil {
			return err
		}
		switch line[0] {
		case '$':
		case '_': // RESP3 null
			vals[k] = nil
			continue
		default:
			return fmt.Errorf("%w: item %d: %.40q", errReply, k, line)
		}
		size, err := respInt(line[1:])
		switch {
		case err != nil || size < -1:
			return fmt.Errorf("%w: item %d: %.40q", errReply, k, line)
		case size == -1:
			vals[k] = nil
			continue
		case size > len(rest)-2 || rest[size] != '\r' || rest[size+1] != '\n':
			return fmt.Errorf("%w: item %d: truncated", errReply, k)
		}
		vals[k] = rest[:size:size]
		rest = rest[size+2:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d bytes after the array", errReply, len(rest))
	}
	return nil
}

// respLine returns the next CRLF-terminated line, without its CRLF, and
// what follows it.
func respLine(b []byte) (line, rest []byte, err error) {
	i := bytes.IndexByte(b, '\n')
	if i < 2 || b[i-1] != '\r' {
		return nil, nil, fmt.Errorf("%w: truncated line", errReply)
	}
	return b[:i-1], b[i+1:], nil
}

// respInt parses a RESP length: an optional minus and at most 10 digits.
func respInt(b []byte) (int, error) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 10 {
		return 0, errReply
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errReply
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// maxBulk bounds one bulk string of a reply: an encoded value is at most
// features.MaxValueSize bytes before compression, and a little more after.
const maxBulk = 2 << 20

// replyBuf collects the raw replies of one node's pipeline, one after the
// other: go-redis streams each into it (redis.RawWriteToCmd), so that a
// reply costs no allocation of its own.
type replyBuf struct{ b []byte }

// Write appends p.
func (w *replyBuf) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// ReadFrom appends what r holds. go-redis copies a bulk string with
// io.CopyN, which hands a LimitedReader of the bulk's size: the buffer
// grows once, to that size, and the bytes are read straight into it.
func (w *replyBuf) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if lr.N > maxBulk {
			return 0, fmt.Errorf("%w: bulk string of %d bytes", errReply, lr.N)
		}
		off, n := len(w.b), int(lr.N)
		w.b = slices.Grow(w.b, n)[:off+n]
		m, err := io.ReadFull(lr, w.b[off:])
		w.b = w.b[:off+m]
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = nil // io.CopyN reports the short count
		}
		return int64(m), err
	}
	var total int64
	for {
		w.b = slices.Grow(w.b, 512)
		m, err := r.Read(w.b[len(w.b):cap(w.b)])
		w.b = w.b[:len(w.b)+m]
		total += int64(m)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// at returns the reply at sp.
func (w *replyBuf) at(sp span) []byte { return w.b[sp.off : sp.off+sp.n : sp.off+sp.n] }
