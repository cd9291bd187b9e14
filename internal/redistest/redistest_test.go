package redistest

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	VerifyTestMain(m)
}

func TestStart(t *testing.T) {
	s := Start(t, "--maxmemory", "10mb")
	c := s.Client()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v", got, err)
	}
	if got, err := c.ConfigGet(ctx, "maxmemory").Result(); err != nil || got["maxmemory"] != strconv.Itoa(10<<20) {
		t.Errorf("maxmemory = %v, %v; the extra arguments were not passed", got, err)
	}
	if got, err := c.ConfigGet(ctx, "save").Result(); err != nil || got["save"] != "" {
		t.Errorf("save = %q, %v; want no persistence", got["save"], err)
	}
	if !strings.HasPrefix(s.Addr, "127.0.0.1:") {
		t.Errorf("Addr = %q, want a loopback address", s.Addr)
	}
	if _, err := os.Stat(s.Dir); err != nil {
		t.Errorf("Dir: %v", err)
	}

	// Paused, it keeps connections but answers nothing.
	s.Pause()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Ping(short).Err()
	if err == nil {
		t.Fatal("PING of a paused server succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("PING of a paused server took %v", d)
	}
	s.Resume()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}

	s.Stop()
	if !s.Exited() {
		t.Error("server still running after Stop")
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Error("PING of a stopped server succeeded")
	}
}

func TestKill(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr == b.Addr {
		t.Fatalf("two servers on %s", a.Addr)
	}
	ctx := context.Background()
	a.Pause() // a paused server can be killed too
	a.Kill()
	if !a.Exited() {
		t.Error("server running after Kill")
	}
	err := a.Client().Ping(ctx).Err()
	if err == nil {
		t.Error("PING of a killed server succeeded")
	}
	if err := b.Client().Ping(ctx).Err(); err != nil {
		t.Errorf("the other server: %v", err)
	}
}

func TestStartCluster(t *testing.T) {
	c := StartCluster(t, 3)
	if len(c.Servers) != 3 {
		t.Fatalf("%d servers", len(c.Servers))
	}
	ctx := context.Background()
	cc := c.Client()
	for i := range 100 {
		if err := cc.Set(ctx, "key"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	total := int64(0)
	for _, s := range c.Servers {
		info, err := s.Client().ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			t.Errorf("%s: CLUSTER INFO = %q, %v", s.Addr, info, err)
		}
		n, err := s.Client().DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("%s holds no keys: the slots are not spread", s.Addr)
		}
		total += n
	}
	if total != 100 {
		t.Errorf("the nodes hold %d keys, want 100", total)
	}
	// A node's own client is redirected for keys of other nodes.
	var moved int
	for i := range 100 {
		err := c.Servers[0].Client().Get(ctx, "key"+strconv.Itoa(i)).Err()
		if err != nil && strings.HasPrefix(err.Error(), "MOVED") {
			moved++
		}
	}
	if moved == 0 {
		t.Error("no MOVED replies from the first node")
	}
	if got := cc.Get(ctx, "key7").Val(); got != "7" {
		t.Errorf("GET key7 through the cluster = %q", got)
	}
}
