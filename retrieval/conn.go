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
	sys    syscall.Conn // the TCP connection, to peek at its socket
	silent func()       // called when a read times out with nothing from the node
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

// waiting reports whether bytes the node sent wait unread in the socket.
func (c *nodeConn) waiting() bool {
	raw, err := c.sys.SyscallConn()
	if err != nil {
		return false
	}
	var ok bool
	// Control, not Read: RawConn.Read fails at once past the deadline.
	if err := raw.Control(func(fd uintptr) { ok = peek(fd) }); err != nil {
		return false
	}
	return ok
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
			conn = &nodeConn{Conn: conn, sys: sc, silent: func() { silent(addr) }}
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
