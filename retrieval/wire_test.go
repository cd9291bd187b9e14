package retrieval

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/redistest"
)

func TestRespEnd(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int // -1: incomplete; -2: an error
	}{
		{"*2\r\n$3\r\nabc\r\n$-1\r\n", 18},
		{"*2\r\n$3\r\nabc\r\n$-1\r\n*0\r\n", 18},
		{"*2\r\n$3\r\nabc\r\n", -1},
		{"*2\r\n$3\r\nab", -1},
		{"*2\r\n$3", -1},
		{"-WRONGTYPE Operation against a key\r\n", 36},
		{"-ERR", -1},
		{"+OK\r\n", 5},
		{":12\r\n", 5},
		{"_\r\n", 3},
		{"*-1\r\n", 5},
		{"%1\r\n+a\r\n:1\r\n", 12},
		{"|1\r\n+a\r\n+b\r\n*1\r\n:1\r\n", 20},
		{"", -1},
		{"$3\r\nabcd\r\n", -2},
		{"$x\r\n", -2},
		{"$-2\r\n", -2},
		{"*99999999\r\n", -2},
		{"?\r\n", -2},
		{"+OK\n", -2},
		{"\r\n", -2},
		{strings.Repeat("*1\r\n", maxRespDepth+1) + ":1\r\n", -2},
	} {
		got, err := respEnd([]byte(tt.in), 0)
		switch {
		case tt.want == -2 && (err == nil || !errors.Is(err, errReply)):
			t.Errorf("respEnd(%q) = %d, %v; want an error", tt.in, got, err)
		case tt.want != -2 && (err != nil || got != tt.want):
			t.Errorf("respEnd(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

// FuzzRespEnd: respEnd never reads past its input, and every prefix of a
// value it accepts is incomplete, never an error or another value.
func FuzzRespEnd(f *testing.F) {
	for _, s := range []string{"*2\r\n$3\r\nabc\r\n$-1\r\n", "-MOVED 1 a:1\r\n", "%1\r\n+a\r\n:1\r\n", "*1\r\n*1\r\n_\r\n", "$0\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end, err := respEnd(b, 0)
		if err != nil {
			if !errors.Is(err, errReply) {
				t.Fatalf("error %v does not wrap errReply", err)
			}
			return
		}
		if end > len(b) || end == 0 || end < -1 {
			t.Fatalf("respEnd = %d for %d bytes", end, len(b))
		}
		if end < 0 {
			return
		}
		for k := range end {
			if got, err := respEnd(b[:k], 0); got != -1 || err != nil {
				t.Fatalf("prefix of %d bytes of a %d-byte value: %d, %v", k, end, got, err)
			}
		}
		// An HMGET reply that respEnd delimits, splitReply parses.
		if b[0] == '*' {
			vals := make([][]byte, 0, 64)
			if n, err := respInt(bytes.TrimRight(b[1:bytes.IndexByte(b, '\n')], "\r")); err == nil && n >= 0 && n <= 64 {
				vals = vals[:n]
				_ = splitReply(b[:end], vals) // must not panic
			}
		}
	})
}

// TestWireReconnects has Redis close every client connection between two
// Fetches: the idle wires are found closed and replaced, and nothing is
// degraded or counted against the node.
func TestWireReconnects(t *testing.T) {
	c := testCatalogParse(t)
	main, srv := openStore(t, "main", ModeStandalone)
	search, _ := openStore(t, "search", ModeEmbedded)
	r := New([]*Store{main, search}, Options{})
	uploadStoreOne(t, r, c)
	for round := range 3 {
		rows, degraded := fetchAll(t, r, c, []string{"1"}, []string{"store_rating"}, 5*time.Second)
		if len(degraded) > 0 || rows[0][0].Value.Float() != 2.5 {
			t.Fatalf("round %d: degraded %v, rows %v", round, degraded, cellStrings(rows))
		}
		if err := srv.Client().Do(context.Background(), "client", "kill", "type", "normal", "skipme", "yes").Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // the closes reach seer's sockets
	}
	if n := main.nodes[0].brk.fails.Load(); n != 0 || testutil.ToFloat64(r.metrics[0].opened) != 0 {
		t.Errorf("%d failures counted against the node", n)
	}
}

// TestWireDB reads a store on database 3: the wires' connections select
// it, as go-redis's do.
func TestWireDB(t *testing.T) {
	c := testCatalogParse(t)
	srv := redistest.Start(t)
	main, err := Open(context.Background(), "main", Config{Addr: srv.Addr, DB: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer main.Close()
	search, _ := openStore(t, "search", ModeEmbedded)
	r := New([]*Store{main, search}, Options{})
	if err := srv.Client().Do(context.Background(), "select", "0").Err(); err != nil {
		t.Fatal(err)
	}
	db3 := func(v float64) []byte { return features.Encode(nil, features.FloatValue(v)) }
	ctx := context.Background()
	if err := main.client.HSet(ctx, "st_1", features.Field("store_rating"), db3(3)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client().HSet(ctx, "st_1", features.Field("store_rating"), db3(0)).Err(); err != nil {
		t.Fatal(err)
	}
	rows, degraded := fetchAll(t, r, c, []string{"1"}, []string{"store_rating"}, 5*time.Second)
	if len(degraded) > 0 || rows[0][0].Value.Float() != 3 {
		t.Errorf("degraded %v, rows %v; want the value of database 3", degraded, cellStrings(rows))
	}
}
