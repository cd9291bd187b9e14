package retrieval

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/seer-ml/seer/features"
)

// An upload to a standalone store or a ring writes its HSETs in RESP
// itself, on wires (wire.go), and reads their replies itself.
//
// Through go-redis, an upload of float features spent about a third of
// seer's CPU in go-redis's writer: every argument of every HSET goes
// through its own type switch and four small writes to a bufio.Writer
// (the length, its CRLF, the bytes, their CRLF), 6.2 million arguments for
// 200,000 rows of 30 features. Here the field of each feature is turned
// into RESP once per upload and a value is encoded straight into the
// batch's buffer, which the batch's pipeline then writes with one write
// per node. A cluster store keeps go-redis's pipelines, for its slot
// routing and redirections.

// rawHSETs reports whether the store's uploads are written in RESP by
// seer: standalone stores and rings.
func (s *Store) rawHSETs() bool {
	return (s.mode == ModeStandalone || s.mode == ModeRing) && len(s.nodes) > 0
}

// nodeIndex returns the index in s.nodes of the node that holds key.
func (s *Store) nodeIndex(key string) int {
	if s.ring == nil {
		return 0
	}
	return s.ring.index(key)
}

// appendHSETHead appends the head of an HSET of key with n fields:
// the array's length, the command and the key.
func appendHSETHead(b []byte, key string, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(2+2*n), 10)
	b = append(b, "\r\n$4\r\nHSET\r\n"...)
	return appendBulk(b, key)
}

// appendValue appends the value v of a feature, stamped unix, as a RESP
// bulk string; scratch is where it is encoded first, returned for the next
// value.
func appendValue(b, scratch []byte, v features.Value, unix int64) (out, scratchOut []byte) {
	scratch = features.EncodeStamped(scratch[:0], v, unix)
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(scratch)), 10)
	b = append(b, '\r', '\n')
	b = append(b, scratch...)
	return append(b, '\r', '\n'), scratch
}

// hsetWires are one pipeline's connections to a store's nodes, dialled
// on first use and kept for the upload.
type hsetWires struct {
	st    *Store
	wires []*wire
}

func (hw *hsetWires) close() {
	for i, w := range hw.wires {
		if w != nil {
			w.close()
			hw.wires[i] = nil
		}
	}
}

// send writes the n HSETs in out to node ni and reads their replies. The
// write has the store's write_timeout, each read of the replies its
// read_timeout, as go-redis gives its pipelines. Any error reply fails
// the batch. A connection that failed is closed; when it broke (reset,
// closed, refused), the batch is sent again on a new one, up to the
// store's max_retries times with go-redis's backoff: HSETs of the same
// values are idempotent, so whatever the broken connection did write is
// written again unchanged.
func (hw *hsetWires) send(ni int, out []byte, n int) error {
	for attempt := 0; ; attempt++ {
		err := hw.sendOnce(ni, out, n)
		if err == nil || attempt >= hw.st.retries || !broken(err) {
			return err
		}
		time.Sleep(backoff(attempt))
	}
}

// sendOnce is one attempt of send.
func (hw *hsetWires) sendOnce(ni int, out []byte, n int) error {
	if hw.wires == nil {
		hw.wires = make([]*wire, len(hw.st.nodes))
	}
	nd := hw.st.nodes[ni]
	opt := nd.client.Options()
	w := hw.wires[ni]
	if w == nil {
		var err error
		w, err = newWire(time.Now().Add(hw.st.dialTimeout+opt.ReadTimeout), opt, hw.st.dial)
		if err != nil {
			return err
		}
		hw.wires[ni] = w
	}
	err := w.hsets(out, n, opt.WriteTimeout, opt.ReadTimeout)
	if err != nil {
		w.close()
		hw.wires[ni] = nil
	}
	return err
}

// broken reports whether err says a connection broke or could not be
// made (reset, closed by the peer, refused), rather than a deadline
// passing or a reply refusing the command.
func broken(err error) bool {
	var op *net.OpError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.As(err, &op):
		return !op.Timeout()
	}
	return false
}

// hsets writes out, n commands, and reads n replies, each of which must
// be an integer.
func (w *wire) hsets(out []byte, n int, writeTimeout, readTimeout time.Duration) error {
	if err := w.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	if _, err := w.conn.Write(out); err != nil {
		return err
	}
	w.in = w.in[:0]
	done, at := 0, 0
	for done < n {
		if at > 0 && at == len(w.in) {
			w.in, at = w.in[:0], 0 // every reply read is checked: start again
		}
		if len(w.in) == cap(w.in) {
			w.in = slices.Grow(w.in, max(16<<10, cap(w.in)))
		}
		if err := w.conn.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
			return err
		}
		m, err := w.conn.Read(w.in[len(w.in):cap(w.in)])
		w.in = w.in[:len(w.in)+m]
		for done < n {
			end, rerr := respEnd(w.in, at)
			if rerr != nil {
				return rerr
			}
			if end < 0 {
				break // more bytes to come
			}
			switch w.in[at] {
			case ':':
			case '-': // Redis's own words: WRONGTYPE Operation against a key...
				return errors.New(string(bytes.TrimRight(w.in[at+1:min(end, at+300)], "\r\n")))
			default:
				return fmt.Errorf("%w to HSET: %.40q", errReply, w.in[at:end])
			}
			done, at = done+1, end
		}
		if done < n && err != nil {
			return err
		}
	}
	if at != len(w.in) {
		return fmt.Errorf("%w: %d bytes after the last reply", errReply, len(w.in)-at)
	}
	w.trim()
	return nil
}
