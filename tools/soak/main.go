// Command soak runs the real seer binary under steady load against three
// real redis-server processes on loopback, a ring or (-store cluster) a
// Redis Cluster, injects one fault per phase, and checks that seer's answers stay honest and its process
// bounded (issue 8). `make soak` builds seer and runs it; docs/soak.md
// says what each phase does and which bounds it checks.
//
//	go build -o bin/seer ./cmd/seer && go run ./tools/soak -seer bin/seer
//
// It prints one table, a row per phase: requests of the steady load,
// answers other than 200 by status, degraded answers, latency
// percentiles, seer's RSS and goroutines at the start and end of the
// phase; then what each phase observed and every bound that broke. It
// exits 1 when a bound broke, 2 when the run could not be set up. Every
// process it starts is stopped when it ends.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
)

// The shape of the steady load and of the data.
const (
	numStores    = 1000
	numConsumers = 200
	firstStore   = 3000000
	firstConsum  = 5000
	numBodies    = 64
	model        = "store_ranker"
)

// Defaults of seer's config that the bounds follow (docs/config.md); the
// run's config leaves them unset.
const (
	breakerCooldown = 5 * time.Second
	artifactCap     = 256 * mib // models.MaxLightGBMSize
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	var broke boundsError
	switch {
	case errors.As(err, &broke):
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
}

// boundsError says how many bounds broke.
type boundsError int

func (e boundsError) Error() string { return fmt.Sprintf("%d bounds broke", int(e)) }

type options struct {
	seer       string
	quickstart string
	phase      time.Duration
	c          int
	candidates int
	readers    int
	keep       bool
	only       string
	store      string // ring or cluster
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.StringVar(&o.seer, "seer", "bin/seer", "the seer binary")
	fs.StringVar(&o.quickstart, "quickstart", "configs/quickstart", "the quickstart directory: its catalog and store_ranker model are used")
	fs.DurationVar(&o.phase, "phase", 45*time.Second, "the length of the phases without a fixed schedule (control, hostile)")
	fs.IntVar(&o.c, "c", 8, "concurrent clients of the steady load, every fourth over gRPC")
	fs.IntVar(&o.candidates, "candidates", 50, "candidates per query of the steady load")
	fs.IntVar(&o.readers, "readers", 8, "concurrent clients of the small reads of one store, its values checked: /v1/features, and every second one gRPC GetFeatures")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, config, data, and records.csv: every request of the steady load)")
	fs.StringVar(&o.only, "only", "", "run only these phases (comma-separated names) after the control phase")
	fs.StringVar(&o.store, "store", "ring", "how the three redis-servers hold the features: ring (client-side sharding) or cluster (a Redis Cluster of three masters)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.store != "ring" && o.store != "cluster" {
		return fmt.Errorf("-store %q: want ring or cluster", o.store)
	}
	seer, err := filepath.Abs(o.seer)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "seer-soak-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(stdout, "work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	e := &env{opts: o, seerBin: seer, work: work, out: stdout, rec: &timeline[record]{}}
	defer e.close()
	if err := e.setup(ctx); err != nil {
		return err
	}
	return e.soak(ctx)
}

// env is the run: the processes, the data, the load.
type env struct {
	opts    options
	seerBin string
	work    string
	out     io.Writer

	nodes   []*redisNode
	markers int            // the node that holds the generations hash
	keyNode map[string]int // entity key -> node

	seer     *exec.Cmd
	seerURL  string
	grpcAddr string
	seerDone chan struct{} // closed when the seer process exited
	seerErr  error

	epoch  time.Time
	rec    *timeline[record]
	probes timeline[probe]
	client *http.Client
	bodies [][]byte
	// grpcBodies are the bodies as gRPC requests, for the steady load's
	// clients over gRPC.
	grpcBodies []*seerv1.PredictRequest
	grpc       seerv1.SeerClient // seer's gRPC API, which half the small reads use
	grpcCC     *grpc.ClientConn

	// The small reads, and the values uploaded for each store: those a
	// small read is checked against.
	reads     timeline[smallRead]
	vals      atomic.Pointer[storeValues]
	storeRest []string // each store's other columns, as written

	// What the feature log is checked against: the steady load's
	// answers, and the consumers' values as uploaded.
	sent         answers
	consumerVals map[string]consumerValues

	controlP99 time.Duration // the steady load's p99 in the control phase
	paused     atomic.Bool   // the steady load and the probes wait while set
	silentBody atomic.Value  // string: the first degraded answer without degraded_values
}

// redisNode is one redis-server of the ring or the cluster.
type redisNode struct {
	port int
	bus  int // the cluster bus port; 0 outside a cluster
	dir  string
	cmd  *exec.Cmd
	cl   *redis.Client
}

func (n *redisNode) addr() string { return "127.0.0.1:" + strconv.Itoa(n.port) }

func (n *redisNode) start(ctx context.Context) error {
	args := []string{"--port", strconv.Itoa(n.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", n.dir, "--logfile", "redis.log", "--enable-debug-command", "local"}
	if n.bus != 0 {
		// A node restarted empty rejoins with its slots from nodes.conf
		// in its directory. The default node timeout (15 s) outlasts
		// every fault, so that no node is failed and no slot lost.
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", strconv.Itoa(n.bus))
	}
	n.cmd = exec.Command("redis-server", args...)
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	go func(c *exec.Cmd) { _ = c.Wait() }(n.cmd)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if n.cl.Ping(ctx).Err() == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on port %d did not answer PING within 10s", n.port)
}

// clusterOK waits until the node says the cluster is ok, with every slot
// served.
func (n *redisNode) clusterOK(ctx context.Context) error {
	var info string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		info = n.cl.ClusterInfo(ctx).Val()
		if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") {
			return nil
		}
	}
	return fmt.Errorf("cluster node %s not ok within 20s:\n%s", n.addr(), info)
}

func (n *redisNode) signal(sig syscall.Signal) {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(sig)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (e *env) since() time.Duration { return time.Since(e.epoch) }

// setup starts three redis-servers (joined in a cluster with -store
// cluster), writes the catalog, the model and the data, uploads it with
// seer upload, and starts seer.
func (e *env) setup(ctx context.Context) error {
	for i := range 3 {
		port, err := freePort()
		if err != nil {
			return err
		}
		dir := filepath.Join(e.work, "redis"+strconv.Itoa(i+1))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		n := &redisNode{port: port, dir: dir}
		if e.opts.store == "cluster" {
			if n.bus, err = freePort(); err != nil {
				return err
			}
		}
		n.cl = redis.NewClient(&redis.Options{Addr: n.addr(), DialTimeout: time.Second, ReadTimeout: 5 * time.Second, MaxRetries: -1})
		e.nodes = append(e.nodes, n)
		if err := n.start(ctx); err != nil {
			return err
		}
	}
	if e.opts.store == "cluster" {
		if err := e.formCluster(ctx); err != nil {
			return err
		}
	}
	if err := e.writeFiles(); err != nil {
		return err
	}
	if _, err := e.upload(ctx); err != nil {
		return err
	}
	if err := e.mapKeys(ctx); err != nil {
		return err
	}
	if err := e.startSeer(ctx); err != nil {
		return err
	}
	e.client = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 0},
	}
	e.bodies = makeBodies(e.opts.candidates)
	for _, b := range e.bodies {
		e.grpcBodies = append(e.grpcBodies, protoPredict(b))
	}
	cc, err := grpc.NewClient(e.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	e.grpcCC, e.grpc = cc, seerv1.NewSeerClient(cc)
	return nil
}

// formCluster joins the nodes in a Redis Cluster of three masters, the
// slots split evenly (redis-cli --cluster create).
func (e *env) formCluster(ctx context.Context) error {
	args := []string{"--cluster", "create"}
	for _, n := range e.nodes {
		args = append(args, n.addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w: %s", err, bytes.TrimSpace(out))
	}
	for _, n := range e.nodes {
		if err := n.clusterOK(ctx); err != nil {
			return err
		}
	}
	return nil
}

// storeIDs and consumerIDs are the entities of the data.
func storeID(i int) string    { return strconv.Itoa(firstStore + i) }
func consumerID(i int) string { return strconv.Itoa(firstConsum + i) }

var cuisines = []string{"pizza", "sushi", "burger", "thai", "mexican"}

func (e *env) writeFiles() error {
	qs := e.opts.quickstart
	catalog, err := os.ReadFile(filepath.Join(qs, "catalog.yaml"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(e.work, "catalog.yaml"), catalog, 0o644); err != nil {
		return err
	}
	v1 := filepath.Join(e.work, "models", model, "1")
	if err := os.MkdirAll(v1, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"manifest.yaml", "model.txt"} {
		data, err := os.ReadFile(filepath.Join(qs, "models", model, "1", f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(v1, f), data, 0o644); err != nil {
			return err
		}
	}
	if err := e.writeTwin(); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	vals := make(map[string][3]float64, numStores)
	e.storeRest = make([]string, numStores)
	for i := range numStores {
		vals[storeID(i)] = [3]float64{1 + 4*r.Float64(), float64(r.IntN(3000)), 10 + 50*r.Float64()}
		e.storeRest[i] = fmt.Sprintf("%d,%s,%t", 1+r.IntN(4), cuisines[r.IntN(len(cuisines))], r.IntN(5) > 0)
	}
	vals, err = e.writeStores(vals)
	if err != nil {
		return err
	}
	e.vals.Store(&storeValues{cur: vals})
	var b bytes.Buffer
	e.consumerVals = make(map[string]consumerValues, numConsumers)
	for i := range numConsumers {
		emb := make([]float64, 8)
		for j := range emb {
			emb[j] = float64(int(2000*r.Float64()-1000)) / 1000
		}
		cv := consumerValues{orders: r.IntN(300), spend: float64(int(1000+9000*r.Float64())) / 100}
		e.consumerVals[consumerID(i)] = cv
		line, _ := json.Marshal(map[string]any{
			"id": consumerID(i), "consumer_order_count": cv.orders, "consumer_avg_spend": cv.spend,
			"consumer_embedding": emb, "consumer_recent_cuisines": []string{cuisines[r.IntN(5)], cuisines[r.IntN(5)]},
		})
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(e.work, "consumers.jsonl"), b.Bytes(), 0o644); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	grpcPort, err := freePort()
	if err != nil {
		return err
	}
	e.seerURL = "http://127.0.0.1:" + strconv.Itoa(port)
	e.grpcAddr = "127.0.0.1:" + strconv.Itoa(grpcPort)
	var addrs []string
	for _, n := range e.nodes {
		addrs = append(addrs, n.addr())
	}
	// Everything the bounds depend on (retrieval_timeout, breaker,
	// read_timeout, limits) is left at its default.
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
grpc_listen: %s
catalog: catalog.yaml
models: models
models_poll: 1s
log_level: warn
admin_token: soak
stores:
  main:
    mode: %s
    addrs: [%s]
shadows:
  sample: %g
`, port, e.grpcAddr, e.opts.store, strings.Join(addrs, ", "), shadowSample) + featureLogConfig()
	return os.WriteFile(filepath.Join(e.work, "seer.yaml"), []byte(cfg), 0o644)
}

// writeStores writes stores.csv with vals (rating, number of ratings,
// delivery minutes by store id) and each store's other columns, and
// returns the values as written and parsed back: what seer must answer.
func (e *env) writeStores(vals map[string][3]float64) (map[string][3]float64, error) {
	var b bytes.Buffer
	b.WriteString("id,store_avg_rating,store_num_ratings,store_delivery_minutes,store_price_level,store_cuisine,store_is_open\n")
	written := make(map[string][3]float64, len(vals))
	for i := range numStores {
		id := storeID(i)
		v := vals[id]
		rating, minutes := strconv.FormatFloat(v[0], 'f', 2, 64), strconv.FormatFloat(v[2], 'f', 1, 64)
		fmt.Fprintf(&b, "%s,%s,%d,%s,%s\n", id, rating, int(v[1]), minutes, e.storeRest[i])
		x, _ := strconv.ParseFloat(rating, 64)
		z, _ := strconv.ParseFloat(minutes, 64)
		written[id] = [3]float64{x, float64(int(v[1])), z}
	}
	return written, os.WriteFile(filepath.Join(e.work, "stores.csv"), b.Bytes(), 0o644)
}

// upload loads both tables with seer upload and returns how long it took.
func (e *env) upload(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	for _, u := range [][2]string{{"store", "stores.csv"}, {"consumer", "consumers.jsonl"}} {
		cmd := exec.CommandContext(ctx, e.seerBin, "upload", "--config", "seer.yaml", "--entity", u[0], u[1])
		cmd.Dir = e.work
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("seer upload %s: %w: %s", u[1], err, bytes.TrimSpace(out))
		}
	}
	return time.Since(start), nil
}

// mapKeys learns which node holds each entity key, and the generations
// hash, from the nodes themselves.
func (e *env) mapKeys(ctx context.Context) error {
	e.keyNode = map[string]int{}
	e.markers = -1
	for i, n := range e.nodes {
		iter := n.cl.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			e.keyNode[iter.Val()] = i
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scan %s: %w", n.addr(), err)
		}
		if n.cl.Exists(ctx, "{seer:markers}:generations").Val() == 1 {
			e.markers = i
		}
	}
	if e.markers < 0 {
		return errors.New("no node holds the generations hash after the upload")
	}
	for i := range numStores {
		if _, ok := e.keyNode["st_"+storeID(i)]; !ok {
			return fmt.Errorf("no node holds st_%s after the upload", storeID(i))
		}
	}
	return nil
}

func (e *env) startSeer(ctx context.Context) error {
	logf, err := os.Create(filepath.Join(e.work, "seer.log"))
	if err != nil {
		return err
	}
	e.seer = exec.Command(e.seerBin, "serve", "--config", "seer.yaml")
	e.seer.Dir = e.work
	e.seer.Stdout, e.seer.Stderr = logf, logf
	if err := e.seer.Start(); err != nil {
		return err
	}
	e.seerDone = make(chan struct{})
	go func() {
		e.seerErr = e.seer.Wait()
		logf.Close()
		close(e.seerDone)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-e.seerDone:
			return fmt.Errorf("seer exited at start (%v); see %s", e.seerErr, logf.Name())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := http.Get(e.seerURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("seer was not ready within 30s")
}

func (e *env) seerAlive() bool {
	select {
	case <-e.seerDone:
		return false
	default:
		return true
	}
}

// close stops every process, stopped ones included.
func (e *env) close() {
	if e.grpcCC != nil {
		e.grpcCC.Close()
	}
	if e.seer != nil && e.seerAlive() {
		_ = e.seer.Process.Signal(syscall.SIGCONT)
		_ = e.seer.Process.Kill()
		<-e.seerDone
	}
	for _, n := range e.nodes {
		n.signal(syscall.SIGCONT)
		n.signal(syscall.SIGKILL)
		n.cl.Close()
	}
}

// makeBodies returns fixed-shape /v1/predict bodies: one query of the
// model, a consumer in the context, n stores as candidates.
func makeBodies(n int) [][]byte {
	r := rand.New(rand.NewPCG(3, 4))
	var out [][]byte
	for range numBodies {
		out = append(out, predictBody(r, n, false))
	}
	return out
}

// predictBody returns one query of n random stores for a random consumer.
func predictBody(r *rand.Rand, n int, debug bool) []byte {
	type cand struct {
		Entities map[string]string  `json:"entities"`
		Features map[string]float64 `json:"features"`
	}
	cands := make([]cand, n)
	for i := range cands {
		cands[i] = cand{
			Entities: map[string]string{"store": storeID(r.IntN(numStores))},
			Features: map[string]float64{"distance_km": float64(r.IntN(200)) / 10},
		}
	}
	body, _ := json.Marshal(map[string]any{"debug": debug, "queries": []map[string]any{{
		"model": model, "context": map[string]string{"consumer": consumerID(r.IntN(numConsumers))},
		"features": map[string]int{"hour_of_day": r.IntN(24)}, "candidates": cands,
	}}})
	return body
}

// sentBody is a body of predictBody, parsed.
type sentBody struct {
	Debug   bool `json:"debug"`
	Queries []struct {
		Model      string            `json:"model"`
		Context    map[string]string `json:"context"`
		Features   map[string]int    `json:"features"`
		Candidates []struct {
			Entities map[string]string  `json:"entities"`
			Features map[string]float64 `json:"features"`
		} `json:"candidates"`
	} `json:"queries"`
}

func parseBody(body []byte) sentBody {
	var b sentBody
	if err := json.Unmarshal(body, &b); err != nil {
		panic(err) // predictBody's own JSON
	}
	return b
}

// protoPredict is a body of predictBody as a gRPC request.
func protoPredict(body []byte) *seerv1.PredictRequest {
	b := parseBody(body)
	req := &seerv1.PredictRequest{Debug: b.Debug}
	for _, q := range b.Queries {
		pq := &seerv1.Query{Model: q.Model, Context: q.Context, Features: map[string]*seerv1.Value{}}
		for name, v := range q.Features {
			pq.Features[name] = &seerv1.Value{Kind: &seerv1.Value_Int64Value{Int64Value: int64(v)}}
		}
		for _, c := range q.Candidates {
			pc := &seerv1.Candidate{Entities: c.Entities, Features: map[string]*seerv1.Value{}}
			for name, v := range c.Features {
				pc.Features[name] = &seerv1.Value{Kind: &seerv1.Value_DoubleValue{DoubleValue: v}}
			}
			pq.Candidates = append(pq.Candidates, pc)
		}
		req.Queries = append(req.Queries, pq)
	}
	return req
}

var (
	degradedTrue   = []byte(`"degraded":true`)
	degradedValues = []byte(`"degraded_values":`)
)

// silentDegraded reports whether a degraded answer fails to say how many
// values took defaults (a missing or zero "degraded_values").
func silentDegraded(body []byte) bool {
	_, after, ok := bytes.Cut(body, degradedValues)
	return !ok || len(after) == 0 || after[0] < '1' || after[0] > '9'
}

// clients runs n clients in a closed loop until stop is closed: client w
// calls send(w, k) for its k-th request and, when it got no answer (seer
// is gone or stopped), pauses 10 ms rather than spin. While the load is
// paused, the clients wait.
func (e *env) clients(stop <-chan struct{}, n int, send func(w, k int) (answered bool)) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for k := 0; ; {
				select {
				case <-stop:
					return
				default:
				}
				if e.paused.Load() {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if !send(w, k) {
					time.Sleep(10 * time.Millisecond)
				}
				k++
			}
		})
	}
	return &wg
}

// load runs the steady load, c clients in a closed loop, until stop is
// closed; every fourth client sends its queries over gRPC.
func (e *env) load(stop <-chan struct{}, c int) *sync.WaitGroup {
	return e.clients(stop, c, func(w, k int) bool {
		sent := (w + k*c) % len(e.bodies)
		if w%4 == 3 {
			return e.predictGRPC(sent)
		}
		start := time.Now()
		rec := record{start: start.Sub(e.epoch)}
		resp, err := e.client.Post(e.seerURL+"/v1/predict", "application/json", bytes.NewReader(e.bodies[sent]))
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil {
				rec.status = resp.StatusCode
				rec.degraded = bytes.Contains(body, degradedTrue)
				rec.silent = rec.degraded && silentDegraded(body)
				if rec.silent {
					e.silentBody.CompareAndSwap(nil, string(body[:min(len(body), 400)]))
				}
				if scores, err := parseScores(body); err == nil && rec.status == 200 {
					e.sent.add(resp.Header.Get("X-Request-Id"), answered{body: sent, n: len(scores), scores: scoresHash(scores)})
				}
			}
		}
		rec.latency = time.Since(start)
		e.rec.add(rec)
		return err == nil
	})
}

// predictGRPC is one request of the steady load over gRPC: Predict of
// body sent.
func (e *env) predictGRPC(sent int) bool {
	start := time.Now()
	rec := record{start: start.Sub(e.epoch)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var header metadata.MD
	ans, err := e.grpc.Predict(ctx, e.grpcBodies[sent], grpc.Header(&header))
	rec.latency = time.Since(start)
	switch {
	case status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded:
		// no answer: seer is gone or stopped
	case err != nil:
		rec.status = 1000 + int(status.Code(err))
	case len(ans.GetResults()) != 1:
		rec.status = 1000 + int(codes.Internal)
	default:
		res := ans.GetResults()[0]
		rec.status, rec.degraded = 200, res.GetDegraded()
		rec.silent = rec.degraded && res.GetDegradedValues() < 1
		if rec.silent {
			e.silentBody.CompareAndSwap(nil, "gRPC: "+res.String())
		}
		if ids := header.Get("x-request-id"); len(ids) == 1 {
			e.sent.add(ids[0], answered{body: sent, n: len(res.GetScores()), scores: scoresHash(res.GetScores()), grpc: true})
		}
	}
	e.rec.add(rec)
	return rec.status != 0
}

// smallRead is one /v1/features read of one store's three features,
// as a product backend reads a few values at a time: each such read is
// small enough to share a round trip with others (retrieval's batches).
type smallRead struct {
	at       time.Duration
	grpc     bool // over gRPC (GetFeatures), not HTTP
	status   int  // 0: no answer
	degraded bool
	checked  int    // values read from Redis or the cache, compared with the upload
	wrong    string // the first of them that was not the store's, if any
	old      bool   // a value was the one uploaded before the last upload
}

// storeValues are the values uploaded for each store, as the small reads
// check them: cur, and for a read started before prevUntil (since the
// run began) prev too, while an upload of new values reaches the
// answers.
type storeValues struct {
	cur, prev map[string][3]float64
	prevUntil time.Duration
}

func (r smallRead) when() time.Duration { return r.at }

// smallFeatures are the features a small read asks for, in the order of
// storeValues.
var smallFeatures = [3]string{"store_avg_rating", "store_num_ratings", "store_delivery_minutes"}

// smallReads runs n clients of small reads in a closed loop until stop
// is closed, each read of a random store and checked against what was
// uploaded for it.
func (e *env) smallReads(stop <-chan struct{}, n int) *sync.WaitGroup {
	rs := make([]*rand.Rand, n)
	for w := range rs {
		rs[w] = rand.New(rand.NewPCG(7, uint64(w)))
	}
	return e.clients(stop, n, func(w, _ int) bool {
		id := storeID(rs[w].IntN(numStores))
		var rd smallRead
		if w%2 == 1 {
			rd = e.smallReadGRPC(id)
		} else {
			rd = e.smallRead(id)
		}
		e.reads.add(rd)
		return rd.status != 0
	})
}

func (e *env) smallRead(id string) smallRead {
	rd := smallRead{at: e.since()}
	body := fmt.Sprintf(`{"queries":[{"features":["%s","%s","%s"],"candidates":[{"entities":{"store":"%s"}}]}]}`,
		smallFeatures[0], smallFeatures[1], smallFeatures[2], id)
	resp, err := e.client.Post(e.seerURL+"/v1/features", "application/json", strings.NewReader(body))
	if err != nil {
		return rd
	}
	defer resp.Body.Close()
	var ans struct {
		Results []struct {
			Degraded bool `json:"degraded"`
			Rows     []map[string]struct {
				Value  json.RawMessage `json:"value"`
				Source string          `json:"source"`
			} `json:"rows"`
		} `json:"results"`
	}
	if json.NewDecoder(resp.Body).Decode(&ans) != nil || resp.StatusCode != 200 || len(ans.Results) != 1 || len(ans.Results[0].Rows) != 1 {
		rd.status = max(resp.StatusCode, 1)
		if resp.StatusCode == 200 {
			rd.wrong = "store " + id + ": an answer without one row"
		}
		return rd
	}
	rd.status, rd.degraded = 200, ans.Results[0].Degraded
	vals := e.vals.Load()
	for k, name := range smallFeatures {
		cell := ans.Results[0].Rows[0][name]
		v, err := strconv.ParseFloat(string(cell.Value), 64)
		rd.check(vals, id, k, cell.Source, v, err == nil, string(cell.Value))
	}
	return rd
}

// smallReadGRPC is smallRead over gRPC: GetFeatures of the same three
// features of one store.
func (e *env) smallReadGRPC(id string) smallRead {
	rd := smallRead{at: e.since(), grpc: true}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ans, err := e.grpc.GetFeatures(ctx, &seerv1.GetFeaturesRequest{Queries: []*seerv1.FeaturesQuery{{
		Features:   smallFeatures[:],
		Candidates: []*seerv1.Candidate{{Entities: map[string]string{"store": id}}},
	}}})
	switch {
	case status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded:
		return rd // no answer: seer is gone or stopped
	case err != nil:
		rd.status = 1000 + int(status.Code(err))
		return rd
	case len(ans.GetResults()) != 1 || len(ans.GetResults()[0].GetRows()) != 1:
		rd.status, rd.wrong = 200, "store "+id+": an answer without one row (gRPC)"
		return rd
	}
	res := ans.GetResults()[0]
	rd.status, rd.degraded = 200, res.GetDegraded()
	vals := e.vals.Load()
	for k, name := range smallFeatures {
		cell := res.GetRows()[0].GetCells()[name]
		var v float64
		ok := true
		switch x := cell.GetValue().GetKind().(type) {
		case *seerv1.Value_DoubleValue:
			v = x.DoubleValue
		case *seerv1.Value_Int64Value:
			v = float64(x.Int64Value)
		default:
			ok = false
		}
		rd.check(vals, id, k, cell.GetSource(), v, ok, cell.GetValue().String())
	}
	return rd
}

// check compares the k-th value of a small read of store id, v (ok when
// the answer held a number), with what was uploaded: a value read from
// Redis or the cache must be the store's, or until vals.prevUntil its
// value before the last upload.
func (rd *smallRead) check(vals *storeValues, id string, k int, source string, v float64, ok bool, shown string) {
	if source != "redis" && source != "cache" {
		return // a default: degraded or absent, not wrong
	}
	rd.checked++
	match, old := vals.match(id, k, v, rd.at)
	switch {
	case ok && match:
		rd.old = rd.old || old
	case rd.wrong == "":
		via := "HTTP"
		if rd.grpc {
			via = "gRPC"
		}
		rd.wrong = fmt.Sprintf("store %s: %s %s from %s over %s, uploaded %v", id, smallFeatures[k], shown, source, via, vals.cur[id][k])
	}
}

// match says whether v is the k-th of smallFeatures of store id as
// uploaded, for an answer to a request sent at since the run began; old
// when it is the value before the last upload, which counts until
// prevUntil.
func (vals *storeValues) match(id string, k int, v float64, at time.Duration) (match, old bool) {
	switch {
	case v == vals.cur[id][k]:
		return true, false
	case vals.prev != nil && at < vals.prevUntil && v == vals.prev[id][k]:
		return true, true
	}
	return false, false
}

// probe is one debug query and where each of its stored inputs came
// from, by node.
type probe struct {
	at       time.Duration
	status   int
	answer   bool   // answered degraded
	redis    [3]int // cells read from Redis, by the node holding the key
	degraded [3]int // cells that took the default because the store was degraded
	absent   [3]int // cells that took the default because the store had no value
	other    int    // other defaults (corrupt, wrong_type, stale)
	checked  int    // values of smallFeatures read from Redis or the cache, compared with the upload
	wrong    string // the first of them that was not the store's, if any
}

// when is the time the probe was sent, since the run began.
func (p probe) when() time.Duration { return p.at }

// probeEvery sends a debug query of 12 stores every period until stop is
// closed: which inputs took defaults, and which node holds each one's
// key.
func (e *env) probeEvery(stop <-chan struct{}, period time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		r := rand.New(rand.NewPCG(5, 6))
		every(stop, period, func() bool {
			if !e.paused.Load() {
				e.probes.add(e.probeOnce(r))
			}
			return true
		})
	})
	return &wg
}

func (e *env) probeOnce(r *rand.Rand) probe {
	body := predictBody(r, 12, true)
	p := probe{at: e.since()}
	resp, err := e.client.Post(e.seerURL+"/v1/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		return p
	}
	defer resp.Body.Close()
	p.status = resp.StatusCode
	var req struct {
		Queries []struct {
			Context    map[string]string `json:"context"`
			Candidates []struct {
				Entities map[string]string `json:"entities"`
			} `json:"candidates"`
		} `json:"queries"`
	}
	_ = json.Unmarshal(body, &req)
	var ans struct {
		Results []struct {
			Degraded bool `json:"degraded"`
			Debug    []map[string]struct {
				Value  json.RawMessage `json:"value"`
				Source string          `json:"source"`
				Why    string          `json:"why"`
			} `json:"debug"`
		} `json:"results"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&ans) != nil || len(ans.Results) != 1 {
		return p
	}
	p.answer = ans.Results[0].Degraded
	q := req.Queries[0]
	vals := e.vals.Load()
	for i, row := range ans.Results[0].Debug {
		id := q.Candidates[i].Entities["store"]
		for k, name := range smallFeatures {
			cell := row[name]
			if cell.Source != "redis" && cell.Source != "cache" {
				continue
			}
			p.checked++
			v, err := strconv.ParseFloat(string(cell.Value), 64)
			if match, _ := vals.match(id, k, v, p.at); (err != nil || !match) && p.wrong == "" {
				p.wrong = fmt.Sprintf("store %s: %s %s from %s in a debug row, uploaded %v", id, name, cell.Value, cell.Source, vals.cur[id][k])
			}
		}
		for name, cell := range row {
			var key string
			switch {
			case strings.HasPrefix(name, "store_"):
				key = "st_" + q.Candidates[i].Entities["store"]
			case strings.HasPrefix(name, "consumer_"):
				key = "cx_" + q.Context["consumer"]
			default:
				continue // request inputs
			}
			n := e.keyNode[key]
			switch {
			case cell.Source == "redis":
				p.redis[n]++
			case cell.Why == "store_degraded":
				p.degraded[n]++
			case cell.Why == "absent":
				p.absent[n]++
			default:
				p.other++
			}
		}
	}
	return p
}

// scrape reads seer's /metrics.
func (e *env) scrape() (metrics, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.seerURL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

// rssMonitor samples seer's RSS from /proc every 20 ms and keeps the
// largest since the last reset.
type rssMonitor struct {
	peak atomic.Int64
}

func (m *rssMonitor) run(stop <-chan struct{}, pid int) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	every(stop, 20*time.Millisecond, func() bool {
		if rss := vmRSS(path); rss > m.peak.Load() {
			m.peak.Store(rss)
		}
		return true
	})
}

// every calls f every period until stop is closed or f returns false.
func every(stop <-chan struct{}, period time.Duration, f func() bool) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if !f() {
			return
		}
	}
}

// vmRSS returns the VmRSS of a /proc/PID/status file in bytes, 0 when it
// cannot be read.
func vmRSS(path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
