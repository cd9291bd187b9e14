// Package redistest starts real redis-server processes for tests: a
// standalone server, or a Redis Cluster of several, each on free loopback
// ports with its own directory and no persistence. The processes die with
// the test.
//
// When redis-server (or redis-cli, for clusters) is missing, tests fail
// when the CI environment variable is set and are skipped, loudly,
// elsewhere.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/seer-ml/seer/internal/testenv"
)

// startTimeout bounds how long a server may take to answer PING, and a
// cluster to agree that it is ok.
const startTimeout = 20 * time.Second

// Server is one redis-server process.
type Server struct {
	// Addr is the server's host:port on 127.0.0.1.
	Addr string
	// Dir is the server's working directory, holding its log.
	Dir string

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited

	mu     sync.Mutex
	client *redis.Client
}

// Binary returns the path of the named program (redis-server, redis-cli),
// failing the test under CI when it is missing and skipping it otherwise.
func Binary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	testenv.Missing(t, fmt.Sprintf("REDIS MISSING: %v (install redis-server to run this test)", err))
	return ""
}

// Start starts a redis-server on a free port of 127.0.0.1, with no
// persistence and its own directory under t.TempDir(), and waits until it
// answers PING. args are added to its command line, for example
// "--maxmemory", "10mb". The server is killed when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, false, args)
}

// start starts a server, trying again on new ports when one was taken
// between choosing and binding it. With bus, it also gives the server a
// cluster bus port.
func start(t testing.TB, bus bool, args []string) *Server {
	t.Helper()
	bin := Binary(t, "redis-server")
	var last error
	for range 5 {
		s, err := launch(t, bin, bus, args)
		if err == nil {
			return s
		}
		last = err
		if !strings.Contains(err.Error(), "in use") {
			break
		}
	}
	t.Fatalf("redistest: start redis-server: %v", last)
	return nil
}

func launch(t testing.TB, bin string, bus bool, extra []string) (*Server, error) {
	t.Helper()
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	s := &Server{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		Dir:  dir,
		t:    t,
		done: make(chan struct{}),
	}
	args := []string{
		"--port", strconv.Itoa(ports[0]),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--logfile", "redis.log",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--protected-mode", "no",
	}
	if bus {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(ports[1]))
	}
	s.cmd = exec.Command(bin, append(args, extra...)...)
	s.cmd.Dir = dir
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.cleanup)
	if err := s.waitPing(); err != nil {
		s.Kill()
		return nil, fmt.Errorf("%w\n%s", err, s.Log())
	}
	return s, nil
}

// waitPing waits until the server answers PING or exits.
func (s *Server) waitPing() error {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("redis-server exited: %s", lastLine(s.Log()))
		default:
		}
		if reply, err := command(s.Addr, "PING"); err == nil && reply == "+PONG" {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s did not answer PING within %v", s.Addr, startTimeout)
}

// command sends one inline command and returns the first line of the reply.
func command(addr, cmd string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// Log returns the server's log file.
func (s *Server) Log() string {
	b, err := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(b)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Client returns a go-redis client of the server, closed when the test
// ends. It follows contexts' deadlines and does not retry.
func (s *Server) Client() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = redis.NewClient(&redis.Options{
			Addr:                  s.Addr,
			Protocol:              2,
			DisableIdentity:       true,
			ContextTimeoutEnabled: true,
			MaxRetries:            -1,
			DialerRetries:         1,
		})
	}
	return s.client
}

// Stop shuts the server down with SIGTERM and waits for it to exit.
func (s *Server) Stop() {
	s.t.Helper()
	s.signal(syscall.SIGCONT) // a paused server cannot handle SIGTERM
	s.signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("redistest: redis-server on %s ignored SIGTERM for 10s", s.Addr)
		s.Kill()
	}
}

// Kill kills the server with SIGKILL and waits for it to exit: clients see
// their connections reset and new ones refused.
func (s *Server) Kill() {
	s.signal(syscall.SIGKILL)
	<-s.done
}

// Pause freezes the server with SIGSTOP: connections stay open but nothing
// answers, as with a server stuck in a long command or a network partition.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

// Exited reports whether the server process has exited.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Server) signal(sig syscall.Signal) {
	if s.Exited() {
		return
	}
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Errorf("redistest: signal %v to redis-server: %v", sig, err)
	}
}

func (s *Server) cleanup() {
	s.mu.Lock()
	if s.client != nil {
		_ = s.client.Close()
	}
	s.mu.Unlock()
	s.Kill()
}

// freePorts returns n distinct free TCP ports of 127.0.0.1. Another process
// may take one before it is used; callers retry.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Cluster is a Redis Cluster: masters, and the replicas AddReplica adds.
type Cluster struct {
	Servers  []*Server // the masters, as StartCluster made them
	Replicas []*Server

	t      testing.TB
	mu     sync.Mutex
	client *redis.ClusterClient
}

// StartCluster starts masters (at least 3) redis-servers in cluster mode,
// joins them with redis-cli --cluster create, the slots spread evenly, and
// waits until every node reports cluster_state:ok. The servers are killed
// when the test ends.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a Redis Cluster needs at least 3 masters, not %d", masters)
	}
	cli := Binary(t, "redis-cli")
	c := &Cluster{t: t}
	for range masters {
		c.Servers = append(c.Servers, start(t, true, nil))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, s := range c.Servers {
		if err := waitClusterOK(s, masters); err != nil {
			t.Fatalf("redistest: %v\n%s", err, s.Log())
		}
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.client != nil {
			_ = c.client.Close()
		}
	})
	return c
}

// waitClusterOK waits until s reports cluster_state:ok and knows every node.
func waitClusterOK(s *Server, nodes int) error {
	deadline := time.Now().Add(startTimeout)
	var info string
	for time.Now().Before(deadline) {
		info = clusterInfo(s.Addr)
		if strings.Contains(info, "cluster_state:ok") &&
			strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(nodes)+"\r") &&
			strings.Contains(info, "cluster_slots_ok:16384") {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("cluster node %s not ok within %v:\n%s", s.Addr, startTimeout, info)
}

// clusterInfo returns the text of CLUSTER INFO, or "" on error.
func clusterInfo(addr string) string {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("CLUSTER INFO\r\n")); err != nil {
		return ""
	}
	r := bufio.NewReader(conn)
	head, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return ""
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil || n < 0 || n > 1<<20 {
		return ""
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return ""
	}
	return string(body)
}

// Addrs returns the host:port of every node.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		addrs[i] = s.Addr
	}
	return addrs
}

// Client returns a go-redis cluster client, closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		c.client = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                 c.Addrs(),
			Protocol:              2,
			DisableIdentity:       true,
			ContextTimeoutEnabled: true,
		})
	}
	return c.client
}

// AddReplica starts one more cluster-enabled redis-server, joins it to the
// cluster as a replica of Servers[master], and waits until it has synced
// and every node knows it. The replica is appended to Replicas.
func (c *Cluster) AddReplica(master int) *Server {
	c.t.Helper()
	m := c.Servers[master]
	r := start(c.t, true, nil)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// The nodes' bus ports are not port+10000: MEET names it.
	known, err := m.Client().ClusterNodes(ctx).Result()
	if err != nil {
		c.t.Fatalf("redistest: CLUSTER NODES: %v", err)
	}
	var bus string
	for _, line := range strings.Split(known, "\n") {
		if f := strings.Fields(line); len(f) > 2 && strings.Contains(f[2], "myself") {
			_, bus, _ = strings.Cut(f[1], "@")
			bus, _, _ = strings.Cut(bus, ",")
		}
	}
	host, port, _ := net.SplitHostPort(m.Addr)
	if err := r.Client().Do(ctx, "cluster", "meet", host, port, bus).Err(); err != nil {
		c.t.Fatalf("redistest: CLUSTER MEET: %v", err)
	}
	id, err := m.Client().ClusterMyID(ctx).Result()
	if err != nil {
		c.t.Fatalf("redistest: CLUSTER MYID: %v", err)
	}
	// Sync at once rather than after the default 5s of diskless delay,
	// and ping the replica every second: CLUSTER SLOTS lists a replica only
	// once its replication offset has moved, which a master without
	// writes does with its pings.
	for _, kv := range [][2]string{{"repl-diskless-sync-delay", "0"}, {"repl-ping-replica-period", "1"}} {
		if err := m.Client().ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			c.t.Fatalf("redistest: CONFIG SET %s: %v", kv[0], err)
		}
	}
	// The replica must have learnt the master through the bus before it
	// can replicate it.
	for {
		err = r.Client().Do(ctx, "cluster", "replicate", id).Err()
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("redistest: CLUSTER REPLICATE: %v\n%s", err, r.Log())
	}
	c.Replicas = append(c.Replicas, r)
	nodes := len(c.Servers) + len(c.Replicas)
	for ctx.Err() == nil {
		info, _ := r.Client().Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rid, err := r.Client().ClusterMyID(ctx).Result()
	if err != nil {
		c.t.Fatalf("redistest: CLUSTER MYID: %v", err)
	}
	for _, s := range append(slices.Clone(c.Servers), c.Replicas...) {
		if err := waitClusterOK(s, nodes); err != nil {
			c.t.Fatalf("redistest: %v\n%s", err, s.Log())
		}
		// Every node must list the replica in its slot map, for clients
		// that ask any of them.
		for ctx.Err() == nil && !listsReplica(ctx, s, rid) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if ctx.Err() != nil {
		c.t.Fatalf("redistest: replica %s of %s did not sync within %v\n%s", r.Addr, m.Addr, startTimeout, r.Log())
	}
	return r
}

// listsReplica reports whether s's CLUSTER SLOTS names the node id as a
// replica.
func listsReplica(ctx context.Context, s *Server, id string) bool {
	//lint:ignore SA1019 go-redis's ClusterClient learns the slot map from CLUSTER SLOTS, so wait on what it will see.
	slots, err := s.Client().ClusterSlots(ctx).Result()
	if err != nil {
		return false
	}
	for _, sl := range slots {
		for _, n := range sl.Nodes[1:] {
			if n.ID == id {
				return true
			}
		}
	}
	return false
}

// VerifyTestMain runs a package's tests, then fails the run if goroutines
// are left over. Closed go-redis clients may keep a dial-retry goroutine for
// up to a second (it notices the closed pool only after its sleep), so the
// check waits up to three seconds for goroutines to end before reporting.
func VerifyTestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var err error
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if err = goleak.Find(); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
