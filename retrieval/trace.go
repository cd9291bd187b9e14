package retrieval

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/sample"
)

// TraceConfig makes the service record a sample of its feature reads, the
// input of `seer simulate`.
type TraceConfig struct {
	// Path is the file the trace is appended to, one JSON object a line.
	Path string `yaml:"path"`
	// Sample is the share of entity keys whose reads are all recorded,
	// between 0 and 1. Sampling keys rather than reads keeps each key's
	// reuse intact: a cache of size n over the whole traffic behaves like
	// one of size n*sample over the trace.
	Sample float64 `yaml:"sample"`
}

// TraceRecord is one feature read: an HMGET of fields from key on store.
type TraceRecord struct {
	Time   time.Time `json:"time"`
	Store  string    `json:"store"`
	Key    string    `json:"key"`
	Fields []string  `json:"fields"`
}

// tracer writes sampled reads on its own goroutine; the request path only
// offers them and drops what does not fit in the queue.
type tracer struct {
	limit   uint64 // keys whose hash is at most limit are recorded
	ch      chan TraceRecord
	f       *os.File
	w       *bufio.Writer
	dropped atomic.Uint64
	werr    error
}

func openTracer(cfg TraceConfig) (*tracer, error) {
	f, err := os.OpenFile(cfg.Path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	t := &tracer{ch: make(chan TraceRecord, 4096), f: f, w: bufio.NewWriterSize(f, 64<<10)}
	t.limit = sample.Limit(cfg.Sample)
	return t, nil
}

// record offers one read of l.
func (t *tracer) record(l *features.Lookup, now time.Time) {
	if xxhash.Sum64String(l.Key) > t.limit {
		return
	}
	fields := make([]string, len(l.Specs))
	for k, s := range l.Specs {
		fields[k] = s.Field
	}
	select {
	case t.ch <- TraceRecord{Time: now, Store: l.Store, Key: l.Key, Fields: fields}:
	default:
		t.dropped.Add(1)
	}
}

func (t *tracer) loop(ctx context.Context) {
	enc := json.NewEncoder(t.w)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	write := func(r TraceRecord) {
		if err := enc.Encode(r); err != nil && t.werr == nil {
			t.werr = err
		}
	}
	for {
		select {
		case r := <-t.ch:
			write(r)
		case <-tick.C:
			t.flush()
		case <-ctx.Done():
			for {
				select {
				case r := <-t.ch:
					write(r)
				default:
					t.flush()
					return
				}
			}
		}
	}
}

func (t *tracer) flush() {
	if err := t.w.Flush(); err != nil && t.werr == nil {
		t.werr = err
	}
}

// close closes the file after the loop has ended.
func (t *tracer) close() error {
	err := errors.Join(t.werr, t.f.Close())
	if err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	return nil
}

// ErrTrace is wrapped by errors about a trace that cannot be read.
var ErrTrace = errors.New("bad trace")

// maxTraceLine bounds one line of a trace.
const maxTraceLine = 1 << 20

// ReadTrace reads a trace and calls fn for each feature read in it. A line
// is either a TraceRecord in JSON, as the service writes them, or a line
// of `redis-cli MONITOR` output; MONITOR lines of commands other than
// HMGET, and its "OK", are skipped, and their reads are taken to be of
// store. An error of fn stops the reading and is returned.
func ReadTrace(r io.Reader, store string, fn func(TraceRecord) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxTraceLine)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || string(line) == "OK" {
			continue
		}
		var rec TraceRecord
		switch c := line[0]; {
		case c == '{':
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&rec); err != nil {
				return fmt.Errorf("%w: line %d: %v", ErrTrace, n, err)
			}
			if rec.Key == "" || len(rec.Fields) == 0 {
				return fmt.Errorf("%w: line %d: a read needs a key and fields", ErrTrace, n)
			}
		case c >= '0' && c <= '9':
			ok, err := parseMonitor(line, &rec)
			if err != nil {
				return fmt.Errorf("%w: line %d: %v", ErrTrace, n, err)
			}
			if !ok {
				continue
			}
			rec.Store = store
		default:
			return fmt.Errorf("%w: line %d: neither a JSON read nor MONITOR output: %.40q", ErrTrace, n, line)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrTrace, err)
	}
	return nil
}

// parseMonitor parses one MONITOR line:
//
//	1700000000.123456 [0 127.0.0.1:50000] "HMGET" "st_1" "1364148139"
//
// It reports false for commands other than HMGET.
func parseMonitor(line []byte, rec *TraceRecord) (bool, error) {
	stamp, rest, ok := bytes.Cut(line, []byte(" ["))
	if !ok {
		return false, errors.New("no [db client] after the time")
	}
	secs, err := strconv.ParseFloat(string(stamp), 64)
	if err != nil || secs < 0 || secs > 1e11 {
		return false, fmt.Errorf("bad time %.30q", stamp)
	}
	_, rest, ok = bytes.Cut(rest, []byte("] "))
	if !ok {
		return false, errors.New("no command after [db client]")
	}
	var args []string
	for len(rest) > 0 {
		var arg string
		if arg, rest, err = monitorArg(rest); err != nil {
			return false, err
		}
		args = append(args, arg)
		if len(args) == 1 && !strings.EqualFold(arg, "hmget") {
			return false, nil
		}
	}
	if len(args) < 3 {
		return false, fmt.Errorf("HMGET with %d arguments", len(args)-1)
	}
	sec, frac := math.Modf(secs)
	rec.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	rec.Key, rec.Fields = args[1], args[2:]
	return true, nil
}

// monitorArg parses one quoted argument as redis escapes it, and skips the
// space after it.
func monitorArg(b []byte) (string, []byte, error) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, fmt.Errorf("argument does not start with a quote: %.20q", b)
	}
	var out []byte
	for i := 1; i < len(b); i++ {
		c := b[i]
		switch c {
		case '"':
			rest := b[i+1:]
			if len(rest) > 0 {
				if rest[0] != ' ' {
					return "", nil, errors.New("no space after an argument")
				}
				rest = rest[1:]
			}
			return string(out), rest, nil
		case '\\':
			if i+1 >= len(b) {
				return "", nil, errors.New("escape at the end of the line")
			}
			i++
			switch e := b[i]; e {
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'a':
				out = append(out, '\a')
			case 'b':
				out = append(out, '\b')
			case 'x':
				if i+2 >= len(b) {
					return "", nil, errors.New("short \\x escape")
				}
				v, err := strconv.ParseUint(string(b[i+1:i+3]), 16, 8)
				if err != nil {
					return "", nil, fmt.Errorf("bad \\x escape %q", b[i+1:i+3])
				}
				out = append(out, byte(v))
				i += 2
			default:
				out = append(out, e)
			}
		default:
			out = append(out, c)
		}
	}
	return "", nil, errors.New("unterminated argument")
}
