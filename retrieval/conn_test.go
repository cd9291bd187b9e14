package retrieval

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// tcpPair returns the two ends of a loopback TCP connection, the client's
// wrapped as dialer wraps it, and a count of the client's silent reads.
func tcpPair(t *testing.T) (client *nodeConn, server net.Conn, silent *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	silent = new(atomic.Int32)
	addr := l.Addr().String()
	conn, err := dialer(time.Second, nil, func(a string) {
		if a != addr {
			t.Errorf("silent(%q), want %q", a, addr)
		}
		silent.Add(1)
	})(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { conn.Close(); server.Close() })
	nc, ok := conn.(*nodeConn)
	if !ok {
		t.Fatalf("dialer returned a %T", conn)
	}
	return nc, server, silent
}

// TestNodeConnSilent: a read that times out with nothing from the node is
// the node's silence; one whose deadline passed while the node's reply
// waited in the socket is not.
func TestNodeConnSilent(t *testing.T) {
	client, server, silent := tcpPair(t)
	buf := make([]byte, 16)

	// Nothing sent: the node was silent.
	client.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := client.Read(buf); !isNetTimeout(err) {
		t.Fatalf("read with nothing sent: %v, want a timeout", err)
	}
	if silent.Load() != 1 {
		t.Fatalf("%d silent reads, want 1", silent.Load())
	}

	// The reply arrives; the reader gets to run after its deadline.
	if _, err := server.Write([]byte("+OK\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the bytes reach the socket
	client.SetReadDeadline(time.Now().Add(-time.Millisecond))
	if _, err := client.Read(buf); !isNetTimeout(err) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	if silent.Load() != 1 {
		t.Errorf("a read that timed out with the reply waiting counted as the node's silence")
	}

	// The bytes are still there to read.
	client.SetReadDeadline(time.Time{})
	n, err := client.Read(buf)
	if err != nil || string(buf[:n]) != "+OK\r\n" {
		t.Fatalf("read = %q, %v", buf[:n], err)
	}
}

// TestNodeFailed: which errors of a read count against its node.
func TestNodeFailed(t *testing.T) {
	var n node
	sent := time.Now()
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{errors.New("EOF"), true},
		{fmt.Errorf("%w: LOADING", errNodeReply), true},
		{timeout, false},                  // the node was not seen silent
		{context.DeadlineExceeded, false}, // likewise
		{context.Canceled, false},
		{redis.ErrPoolTimeout, false},
		{redis.ErrClosed, false},
	} {
		if got := n.failed(tt.err, sent); got != tt.want {
			t.Errorf("failed(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	n.silentAt.Store(time.Now().UnixNano())
	for _, err := range []error{timeout, context.DeadlineExceeded} {
		if !n.failed(err, sent) {
			t.Errorf("failed(%v) = false after the node was silent", err)
		}
	}
	if n.failed(timeout, time.Now().Add(time.Second)) {
		t.Error("silence before the read was sent counted against it")
	}
}
