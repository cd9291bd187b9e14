package retrieval

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"time"
)

// A read that times out is the node's failure only when the node sent
// nothing in time. Go reports a deadline as passed when the goroutine
// reading gets to run after it, even if the reply had been waiting in the
// socket for most of that time: on a saturated machine, or after a GC
// pause or a stopped process, the deadline says more of seer than of the
// node. So a connection to a node looks, when a read times out, at whether
// bytes from the node are waiting unread; only when none are does it tell
// the node's breaker that the node was silent (see node.silentSince).
// go-redis may report such a timeout as the context's deadline (after a
// retry's pause, or while it sets up a new connection), so the verdict is
// kept beside the node rather than in the error.

// nodeConn is a TCP connection to a node that tells its own timeouts from
// the node's.
type nodeConn struct {
	net.Conn
	sys    syscall.Conn    // the TCP connection
	raw    syscall.RawConn // its socket, to peek at
	silent func()          // called when a read times out with nothing from the node

	// peekFn peeks into the socket and leaves the answer in peeked: made
	// once, so that a peek costs no allocation. A connection is used by
	// one goroutine at a time.
	peekFn func(fd uintptr)
	peeked peekResult
}

func (c *nodeConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && n == 0 && isNetTimeout(err) && !c.waiting() {
		c.silent()
	}
	return n, err
}

// SyscallConn gives go-redis's health check of idle connections the
// socket, as it has without the wrapper.
func (c *nodeConn) SyscallConn() (syscall.RawConn, error) { return c.sys.SyscallConn() }

// NetConn returns the wrapped connection.
func (c *nodeConn) NetConn() net.Conn { return c.Conn }

// What a socket holds to read, without reading it.
type peekResult uint8

const (
	peekNone   peekResult = iota // nothing yet
	peekData                     // bytes
	peekClosed                   // the end of the stream, or an error
)

// waiting reports whether bytes the node sent wait unread in the socket.
func (c *nodeConn) waiting() bool { return c.peekState() == peekData }

// peekState tells what the socket holds to read.
func (c *nodeConn) peekState() peekResult {
	if c.raw == nil {
		return peekNone
	}
	c.peeked = peekClosed
	// Control, not Read: RawConn.Read fails at once past the deadline.
	if err := c.raw.Control(c.peekFn); err != nil {
		return peekClosed
	}
	return c.peeked
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dialer returns the function go-redis dials a store's nodes with: TCP
// (with TLS over it when tlsConfig is set) through a nodeConn that calls
// silent with the node's address.
func dialer(timeout time.Duration, tlsConfig *tls.Config, silent func(addr string)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		// One deadline for connecting and the TLS handshake, as tls.Dial.
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Minute}}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if sc, ok := conn.(syscall.Conn); ok {
			raw, _ := sc.SyscallConn()
			nc := &nodeConn{Conn: conn, sys: sc, raw: raw, silent: func() { silent(addr) }}
			nc.peekFn = func(fd uintptr) { nc.peeked = peek(fd) }
			conn = nc
		}
		if tlsConfig == nil {
			return conn, nil
		}
		cfg := tlsConfig
		if cfg.ServerName == "" {
			// As tls.Dial: verify the host the address names.
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				host = addr
			}
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
}
