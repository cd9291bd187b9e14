package retrieval

import (
	"bytes"
	"errors"
	"fmt"
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
		if size, body, ok := bulkHead(rest); ok {
			// The common item, parsed in place: the same as below, without
			// finding the line's end first.
			switch {
			case size == -1:
				vals[k] = nil
				rest = rest[body:]
				continue
			case size > len(rest)-body-2 || rest[body+size] != '\r' || rest[body+size+1] != '\n':
				return fmt.Errorf("%w: item %d: truncated", errReply, k)
			}
			vals[k] = rest[body : body+size : body+size]
			rest = rest[body+size+2:]
			continue
		}
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

// bulkHead parses the head of a bulk string at the start of b, "$", an
// optional minus, 1 to 10 digits and CRLF, with a length of at least -1:
// the length, and where the string's bytes start. ok is false for
// anything else, which splitReply then reads line by line (and refuses,
// unless it is a RESP3 null). splitReply spent most of its time in
// bytes.IndexByte on these 4-byte lines.
func bulkHead(b []byte) (size, body int, ok bool) {
	if len(b) < 4 || b[0] != '$' {
		return 0, 0, false
	}
	i, neg := 1, b[1] == '-'
	if neg {
		i++
	}
	start := i
	for ; i < len(b) && i-start <= 10 && b[i] >= '0' && b[i] <= '9'; i++ {
		size = size*10 + int(b[i]-'0')
	}
	if i == start || i-start > 10 || i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' {
		return 0, 0, false
	}
	if neg {
		size = -size
	}
	if size < -1 {
		return 0, 0, false
	}
	return size, i + 2, true
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
