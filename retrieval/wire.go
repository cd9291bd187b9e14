package retrieval

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fetch writes each node's HMGETs and reads their replies itself, on
// connections go-redis makes.
//
// go-redis reads a raw reply into a buffer it grows from nil (RawCmd:
// about seven allocations per HMGET of twenty fields), or streams each bulk
// string of it to a writer with io.CopyN, whose LimitedReader escapes
// (RawWriteToCmd: an allocation per value): 4,000 allocations for a query
// of 200 candidates, where the whole request has a budget of 100. Neither
// lets the caller's memory take the reply. So the HMGETs are written and
// their replies read here, in buffers kept from one read to the next, and
// go-redis does everything else it does well: dialling (through dialer,
// with TLS), each connection's handshake (HELLO or AUTH with the ACL user,
// SELECT, CLIENT SETNAME, READONLY to a cluster replica), the cluster's
// topology and redirections, and every other command.
//
// A wire is one such connection. It is made by a go-redis client of one
// connection whose dialer hands over a connection dialled beforehand, so
// that the wire knows its socket; the client's Conn holds the connection
// out of its pool for as long as the wire lives, so that go-redis never
// touches it meanwhile. A node keeps its idle wires for the next read; a
// wire whose connection broke, or whose reply was not read to the end, is
// closed.

// wire is one connection to a node that Fetch reads through.
type wire struct {
	client *redis.Client
	held   *redis.Conn
	conn   net.Conn // what dialer made: a nodeConn, or TLS over one
	tls    bool
	in     []byte // replies, read here
	out    []byte // commands, written from here
	used   time.Time
}

// checkIdle is how long a wire may stay idle before it is checked
// (stale) before its next read: a wire in constant use saves the syscall,
// and should its connection have broken meanwhile, the read is tried
// again on a new one.
const checkIdle = time.Second

// errRedial is what the dialer of a wire's client says when go-redis would
// dial a second connection.
var errRedial = errors.New("retrieval: a wire has one connection")

// maxKeptBuffer is the largest buffer a wire keeps for its next read.
const maxKeptBuffer = 1 << 20

// newWire dials the node whose client options are opt and sets the
// connection up through go-redis, before deadline.
func newWire(deadline time.Time, opt *redis.Options, dial func(context.Context, string, string) (net.Conn, error)) (*wire, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	conn, err := dial(ctx, "tcp", opt.Addr)
	if err != nil {
		return nil, err
	}
	var handed atomic.Bool
	o := *opt
	o.Dialer = func(context.Context, string, string) (net.Conn, error) {
		if handed.Swap(true) {
			return nil, errRedial
		}
		return conn, nil
	}
	o.OnConnect = opt.OnConnect
	o.PoolSize, o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns = 1, 0, 0, 1
	o.PipelinePoolSize = -1
	o.ConnMaxIdleTime, o.ConnMaxLifetime = -1, 0
	o.MaxRetries, o.DialerRetries = -1, 1
	o.ContextTimeoutEnabled = true
	w := &wire{client: redis.NewClient(&o), conn: conn}
	_, w.tls = conn.(*tls.Conn)
	w.held = w.client.Conn()
	if err := w.held.Ping(ctx).Err(); err != nil {
		w.close()
		return nil, fmt.Errorf("set up a connection to %s: %w", opt.Addr, err)
	}
	return w, nil
}

// close closes the wire's connection and its client.
func (w *wire) close() {
	w.conn.Close()
	w.held.Close()
	w.client.Close()
}

// stale reports whether an idle wire's connection cannot be used: the node
// closed it, or sent something unasked. A TLS connection may hold a record
// the node sent after the handshake (session tickets): only its end counts.
func (w *wire) stale() bool {
	nc, ok := w.conn.(*nodeConn)
	if !ok {
		if u, ok := w.conn.(interface{ NetConn() net.Conn }); ok {
			nc, _ = u.NetConn().(*nodeConn)
		}
	}
	if nc == nil {
		return false
	}
	state := nc.peekState()
	return state == peekClosed || (state == peekData && !w.tls)
}

// roundTrip sends the commands in w.out and reads n replies into w.in,
// before deadline. It returns where each reply is in w.in. After each
// read that completed replies but not all, arrived(w.in, done) is called,
// when not nil, with the number of replies complete so far: the caller
// can decode them while the node still works on the rest.
func (w *wire) roundTrip(deadline time.Time, n int, spans []span, arrived func(in []byte, done int)) error {
	if err := w.conn.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := w.conn.Write(w.out); err != nil {
		return err
	}
	w.in = w.in[:0]
	done, at := 0, 0
	for done < n {
		if len(w.in) == cap(w.in) {
			w.in = slices.Grow(w.in, max(64<<10, cap(w.in)))
		}
		m, err := w.conn.Read(w.in[len(w.in):cap(w.in)])
		w.in = w.in[:len(w.in)+m]
		before := done
		for done < n {
			end, err := respEnd(w.in, at)
			if err != nil {
				return err
			}
			if end < 0 {
				break // more bytes to come
			}
			spans[done] = span{int32(at), int32(end - at)}
			done, at = done+1, end
		}
		if arrived != nil && done > before && done < n {
			arrived(w.in, done)
		}
		if done < n && err != nil {
			return err
		}
	}
	if at != len(w.in) {
		return fmt.Errorf("%w: %d bytes after the last reply", errReply, len(w.in)-at)
	}
	w.used = time.Now()
	return nil
}

// trim lets go of buffers grown past what a wire keeps.
func (w *wire) trim() {
	if cap(w.in) > maxKeptBuffer {
		w.in = nil
	}
	if cap(w.out) > maxKeptBuffer {
		w.out = nil
	}
}

// appendHMGET appends HMGET key fields... in RESP.
func appendHMGET(b []byte, key string, fields int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(2+fields), 10)
	b = append(b, "\r\n$5\r\nHMGET\r\n"...)
	return appendBulk(b, key)
}

// appendBulk appends s as a RESP bulk string.
func appendBulk(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// wires is a node's wires: the idle ones, and the number in use.
type wires struct {
	mu     sync.Mutex
	idle   []*wire
	busy   map[*wire]struct{}
	closed bool
}

// get returns a wire for a read: an idle one that can be used, or a new
// one made by dial. It fails once the store is closed.
func (ws *wires) get(dial func() (*wire, error)) (*wire, error) {
	for {
		ws.mu.Lock()
		if ws.closed {
			ws.mu.Unlock()
			return nil, redis.ErrClosed
		}
		if len(ws.idle) == 0 {
			ws.mu.Unlock()
			break
		}
		w := ws.idle[len(ws.idle)-1]
		ws.idle = ws.idle[:len(ws.idle)-1]
		ws.mu.Unlock()
		if time.Since(w.used) < checkIdle || !w.stale() {
			ws.lend(w)
			return w, nil
		}
		w.close()
	}
	w, err := dial()
	if err != nil {
		return nil, err
	}
	ws.lend(w)
	return w, nil
}

// lend counts w as in use.
func (ws *wires) lend(w *wire) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.busy == nil {
		ws.busy = make(map[*wire]struct{})
	}
	ws.busy[w] = struct{}{}
	if ws.closed {
		w.conn.Close() // the read fails at once
	}
}

// put takes back a wire from a read that is done with it: kept for the
// next read when broken is false, closed when it is true or the store is
// closed.
func (ws *wires) put(w *wire, broken bool) {
	w.trim()
	ws.mu.Lock()
	delete(ws.busy, w)
	if !ws.closed && !broken {
		ws.idle = append(ws.idle, w)
		ws.mu.Unlock()
		return
	}
	ws.mu.Unlock()
	w.close()
}

// close closes the idle wires and the connections of those in use, whose
// reads then fail at once; wires put back later are closed.
func (ws *wires) close() {
	ws.mu.Lock()
	idle := ws.idle
	ws.idle, ws.closed = nil, true
	for w := range ws.busy {
		w.conn.Close()
	}
	ws.mu.Unlock()
	for _, w := range idle {
		w.close()
	}
}

// respEnd returns where the RESP value that starts at b[at] ends, or -1
// when b does not hold all of it yet. A malformed value is an error
// wrapping errReply.
func respEnd(b []byte, at int) (int, error) {
	return respValueEnd(b, at, 0)
}

// Bounds of what respEnd accepts, against a peer that lies about sizes.
const (
	maxRespItems = 1 << 20
	maxRespDepth = 8
)

func respValueEnd(b []byte, at, depth int) (int, error) {
	if at >= len(b) {
		return -1, nil
	}
	line := at + 1
	for ; line < len(b) && b[line] != '\n'; line++ {
	}
	if line >= len(b) {
		if line-at > 64+maxBulk { // no line of a reply is that long
			return 0, fmt.Errorf("%w: no end of line", errReply)
		}
		return -1, nil
	}
	if b[line-1] != '\r' || line-1 == at {
		return 0, fmt.Errorf("%w: line without CRLF", errReply)
	}
	head, end := b[at+1:line-1], line+1
	switch b[at] {
	case '+', '-', ':', '_', ',', '#', '(':
		return end, nil
	case '$', '!', '=':
		n, err := respInt(head)
		switch {
		case err != nil || n < -1 || n > maxBulk:
			return 0, fmt.Errorf("%w: bulk length %.20q", errReply, head)
		case n == -1:
			return end, nil
		case end+n+2 > len(b):
			return -1, nil
		case b[end+n] != '\r' || b[end+n+1] != '\n':
			return 0, fmt.Errorf("%w: bulk string without CRLF", errReply)
		}
		return end + n + 2, nil
	case '*', '~', '>', '%', '|':
		n, err := respInt(head)
		if err != nil || n < -1 || n > maxRespItems {
			return 0, fmt.Errorf("%w: array length %.20q", errReply, head)
		}
		if depth >= maxRespDepth {
			return 0, fmt.Errorf("%w: nested more than %d deep", errReply, maxRespDepth)
		}
		if b[at] == '%' || b[at] == '|' {
			n *= 2 // maps and attributes: pairs
		}
		for range n {
			if end, err = respValueEnd(b, end, depth+1); err != nil || end < 0 {
				return end, err
			}
		}
		if b[at] == '|' {
			return respValueEnd(b, end, depth) // an attribute precedes its value
		}
		return end, nil
	}
	return 0, fmt.Errorf("%w: type byte %q", errReply, b[at])
}

// commandArgs returns the arguments of a command Fetch wrote (appendHMGET,
// appendBulk), for go-redis to send it again.
func commandArgs(cmd []byte) ([]any, error) {
	line, rest, err := respLine(cmd)
	if err != nil || len(line) < 2 || line[0] != '*' {
		return nil, fmt.Errorf("%w: not a command", errReply)
	}
	n, err := respInt(line[1:])
	if err != nil || n < 1 {
		return nil, fmt.Errorf("%w: not a command", errReply)
	}
	args := make([]any, n)
	for i := range args {
		if line, rest, err = respLine(rest); err != nil || len(line) < 2 || line[0] != '$' {
			return nil, fmt.Errorf("%w: argument %d", errReply, i)
		}
		size, err := respInt(line[1:])
		if err != nil || size < 0 || size+2 > len(rest) {
			return nil, fmt.Errorf("%w: argument %d", errReply, i)
		}
		args[i], rest = string(rest[:size]), rest[size+2:]
	}
	return args, nil
}
