// Command grpcload sends the same /v1/predict query (or with -features,
// the same /v1/features query) to seer over HTTP/JSON and over gRPC,
// alternating rounds of a fixed duration, and prints each round's request
// rate and latency percentiles, then the medians. One
// client process drives both transports the same way: c workers in a
// closed loop, connections reused.
//
//	grpcload -http http://127.0.0.1:8080 -grpc 127.0.0.1:9090 -body body.json -c 8 -d 10s -rounds 3
//
// Both clients send bytes encoded once (the JSON body as read, the gRPC
// request marshalled once), so that the client's own encoding does not
// weigh on one side; with -pid, each round also reports the CPU time the
// server process spent per request (from /proc/PID/stat).
//
// The body is a /v1/predict body whose queries name a model, a context and
// candidates by entity (no request features), or a /v1/features body
// whose queries name features, a context and candidates by entity; ids
// may be strings or integers. Used by tools/bench_grpc.sh; docs/performance.md has figures.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
	"github.com/seer-ml/seer/internal/loadgen"
)

// protoRequest is the body as a gRPC request: a PredictRequest, or with
// features a GetFeaturesRequest.
func protoRequest(b loadgen.Body, features bool) proto.Message {
	if features {
		req := &seerv1.GetFeaturesRequest{}
		for _, q := range b.Queries {
			req.Queries = append(req.Queries, &seerv1.FeaturesQuery{Features: q.Features, Context: loadgen.IDs(q.Context), Candidates: candidates(q)})
		}
		return req
	}
	req := &seerv1.PredictRequest{}
	for _, q := range b.Queries {
		req.Queries = append(req.Queries, &seerv1.Query{Model: q.Model, Context: loadgen.IDs(q.Context), Candidates: candidates(q)})
	}
	return req
}

// candidates returns a query's candidates as gRPC messages.
func candidates(q loadgen.Query) []*seerv1.Candidate {
	var out []*seerv1.Candidate
	for _, c := range q.Candidates {
		out = append(out, &seerv1.Candidate{Entities: loadgen.IDs(c.Entities)})
	}
	return out
}

func main() {
	httpURL := flag.String("http", "", "seer's HTTP base URL")
	grpcAddr := flag.String("grpc", "", "seer's gRPC address")
	bodyPath := flag.String("body", "", "a /v1/predict body (JSON)")
	conc := flag.Int("c", 8, "concurrent workers")
	dur := flag.Duration("d", 10*time.Second, "duration of each round of each transport")
	rounds := flag.Int("rounds", 3, "rounds, each one HTTP then one gRPC")
	pid := flag.Int("pid", 0, "the server's process id, to report its CPU time per request")
	features := flag.Bool("features", false, "the body is a /v1/features body: send it to /v1/features and GetFeatures")
	flag.Parse()
	if *httpURL == "" || *grpcAddr == "" || *bodyPath == "" {
		fmt.Fprintln(os.Stderr, "grpcload: -http, -grpc and -body are required")
		os.Exit(2)
	}
	raw, err := os.ReadFile(*bodyPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(1)
	}
	var b loadgen.Body
	if err := json.Unmarshal(raw, &b); err != nil {
		fmt.Fprintln(os.Stderr, "grpcload: body:", err)
		os.Exit(1)
	}
	preq, err := proto.Marshal(protoRequest(b, *features))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(1)
	}

	path, method := "/v1/predict", seerv1.Seer_Predict_FullMethodName
	if *features {
		path, method = "/v1/features", seerv1.Seer_GetFeatures_FullMethodName
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc, MaxConnsPerHost: *conc}}
	httpDo := func() error {
		resp, err := hc.Post(*httpURL+path, "application/json", bytes.NewReader(raw))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || bytes.Contains(data, []byte(`"degraded"`)) {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	conn, err := grpc.NewClient(*grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(1)
	}
	defer conn.Close()
	grpcDo := func() error {
		if *features {
			resp := new(seerv1.GetFeaturesResponse)
			err := conn.Invoke(context.Background(), method, &preq, resp, grpc.ForceCodec(loadgen.RawCodec{}))
			if err == nil && resp.Results[0].Degraded {
				err = fmt.Errorf("degraded")
			}
			return err
		}
		resp := new(seerv1.PredictResponse)
		err := conn.Invoke(context.Background(), method, &preq, resp, grpc.ForceCodec(loadgen.RawCodec{}))
		if err == nil && resp.Results[0].Degraded {
			err = fmt.Errorf("degraded")
		}
		return err
	}
	// Warm both up.
	loadgen.Run(*conc, time.Second, -1, "", httpDo)
	loadgen.Run(*conc, time.Second, -1, "", grpcDo)
	server := *pid // the server's CPU time is read only with -pid
	if server == 0 {
		server = -1
	}

	fmt.Printf("%-6s %-5s %10s %9s %9s %11s %7s %6s\n", "round", "api", "req/s", "p50 ms", "p99 ms", "server µs", "errors", "load")
	var rates = map[string][]float64{}
	for i := range *rounds {
		for _, t := range []struct {
			name string
			do   func() error
		}{{"http", httpDo}, {"grpc", grpcDo}} {
			r := loadgen.Run(*conc, *dur, server, "", t.do)
			load, _ := os.ReadFile("/proc/loadavg")
			var l1 string
			fmt.Sscan(string(load), &l1)
			fmt.Printf("%-6d %-5s %10.0f %9.2f %9.2f %11d %7d %6s\n", i+1, t.name, r.Rate,
				float64(r.P50.Microseconds())/1000, float64(r.P99.Microseconds())/1000, r.CPU.Microseconds(), r.Errors, l1)
			rates[t.name] = append(rates[t.name], r.Rate)
		}
	}
	med := func(xs []float64) float64 { slices.Sort(xs); return xs[len(xs)/2] }
	h, g := med(rates["http"]), med(rates["grpc"])
	fmt.Printf("median req/s: http %.0f, grpc %.0f (grpc/http %.2f)\n", h, g, g/h)
}
