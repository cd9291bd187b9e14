package retrieval

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/seer-ml/seer/features"
)

// The killed-upload test runs uploads in a child process (this test
// binary, running TestUploadChild) and SIGKILLs it at random moments.

const killFeatures = "store_rating,store_orders,store_open"

// killRows is the number of entities: fewer under the race detector, which
// makes reading them all slow.
var killRows = map[bool]int{false: 20000, true: 4000}[raceEnabled]

// killFile writes version v of the data: every store's values differ
// between versions, and v=1 leaves out every tenth store.
func killFile(t *testing.T, v int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("id," + killFeatures + "\n")
	for id := 1; id <= killRows; id++ {
		if v == 1 && id%10 == 0 {
			continue
		}
		fmt.Fprintf(&b, "%d,%d.5,%d,%v\n", id, id*10+v, id*100+v, (id+v)%2 == 0)
	}
	return writeFile(t, fmt.Sprintf("v%d.csv", v), b.String())
}

// TestUploadChild is the child process of TestUploadKilled: it uploads
// the file it is told to, then prints "switched".
func TestUploadChild(t *testing.T) {
	addr, file := os.Getenv("SEER_KILL_ADDR"), os.Getenv("SEER_KILL_FILE")
	if addr == "" {
		t.Skip("the child of TestUploadKilled")
	}
	c := testCatalogParse(t)
	st, err := Open(context.Background(), "main", Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New([]*Store{st}, Options{})
	opt := UploadOptions{BatchSize: 100, ProgressEvery: time.Millisecond, Progress: func(p UploadProgress) {
		fmt.Printf("rows %d\n", p.Rows)
	}}
	if _, err := r.UploadFile(context.Background(), c, "store", file, opt); err != nil {
		t.Fatal(err)
	}
	fmt.Println("switched")
}

// TestUploadKilled kills uploads at random points: served values are
// always, for every feature, exactly those of the last upload that
// finished, never a mix; and the collection deletes what the dead
// uploads wrote once their leases are over.
func TestUploadKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes for seconds")
	}
	c := testCatalogParse(t)
	main, srv := openStore(t, "main", ModeStandalone)
	r := New([]*Store{main}, Options{})
	ctx := context.Background()
	files := []string{killFile(t, 0), killFile(t, 1)}
	if _, err := r.UploadFile(ctx, c, "store", files[0], UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	names := strings.Split(killFeatures, ",")
	ids := make([]string, 0, killRows)
	for id := 1; id <= killRows; id++ {
		ids = append(ids, strconv.Itoa(id))
	}
	// servedBy reads every value through a fresh store, as a new pod would.
	servedBy := func(addr string) [][]string {
		st, err := Open(ctx, "main", Config{Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		rows, degraded := fetchAll(t, New([]*Store{st}, Options{}), c, ids, names, time.Minute)
		if len(degraded) > 0 {
			t.Fatalf("degraded %v", degraded)
		}
		out := make([][]string, len(rows))
		for i, row := range rows {
			for _, cell := range row {
				out[i] = append(out[i], cell.Source.String()+" "+cell.Value.String())
			}
		}
		return out
	}
	served := func() [][]string { return servedBy(srv.Addr) }
	versions := [][][]string{served()}
	// The served values of version 1, from a clean upload on a second
	// server.
	{
		other, srv2 := openStore(t, "main", ModeStandalone)
		if _, err := New([]*Store{other}, Options{}).UploadFile(ctx, c, "store", files[1], UploadOptions{}); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, servedBy(srv2.Addr))
	}
	if cmp.Equal(versions[0], versions[1]) {
		t.Fatal("the two versions serve the same values")
	}

	child := func(file string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestUploadChild$", "-test.v")
		cmd.Env = append(os.Environ(), "SEER_KILL_ADDR="+srv.Addr, "SEER_KILL_FILE="+file)
		return cmd
	}
	current := 0
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	kills, finished := 0, 0
	for i := range 10 {
		next := 1 - current
		cmd := child(files[next])
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill the child once it has read a random number of rows (some
		// beyond the end: those uploads finish).
		target := rng.IntN(killRows + killRows/5)
		lines := bufio.NewScanner(out)
		switched := false
		for lines.Scan() {
			var n int
			if _, err := fmt.Sscanf(lines.Text(), "rows %d", &n); err == nil && n >= target {
				break
			}
			if lines.Text() == "switched" {
				switched = true
			}
		}
		_ = cmd.Process.Kill()
		go io.Copy(io.Discard, out)
		_ = cmd.Wait()
		if switched {
			finished++
		} else {
			kills++
		}
		got := served()
		switch {
		case cmp.Equal(got, versions[current]):
		case cmp.Equal(got, versions[next]):
			current = next // switched, perhaps killed before it said so
		default:
			t.Fatalf("kill %d after %d rows: served values are neither version:\n%s", i, target, cmp.Diff(versions[current], got))
		}
	}
	t.Logf("%d uploads killed, %d finished", kills, finished)
	if kills == 0 {
		t.Error("no upload was killed before it finished")
	}

	// The dead uploads' generations are collected once their leases ran
	// out; only the served and the previous generations remain.
	st, err := r.CollectGarbage(ctx, c, GCOptions{Now: time.Now().Add(uploadLease + DefaultGCGrace + time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	state, err := main.Generations(ctx)
	if err != nil || len(state.Uploads) != 0 || len(state.Garbage) != 0 {
		t.Fatalf("after the collection (%+v): %+v, %v", st, state, err)
	}
	keep := map[string]bool{}
	for _, name := range names {
		fg := state.Features[features.ID(name)]
		keep[GenField(features.ID(name), fg.Current.Gen)] = true
		keep[GenField(features.ID(name), fg.Previous.Gen)] = true
	}
	for _, key := range []string{"st_1", "st_10", "st_" + strconv.Itoa(killRows)} {
		fields, err := main.client.HKeys(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fields {
			if !keep[f] {
				t.Errorf("%s still holds field %s of a generation neither served nor previous", key, f)
			}
		}
	}
	if got := served(); !cmp.Equal(got, versions[current]) {
		t.Error("the collection changed served values")
	}
}
