package serving

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
	"github.com/seer-ml/seer/features"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// BenchmarkGRPCPredict measures what the server does for a 200-candidate
// query over gRPC, without the transport: reading the request message,
// the request path against a real Redis, and marshalling the answer as
// the server's codec does.
func BenchmarkGRPCPredict(b *testing.B) {
	g := grpcSeer{s: testServer(b)}
	codec := newWireCodec()
	for _, debug := range []bool{false, true} {
		msg, err := proto.Marshal(rankingProto(debug))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("candidates=200/debug=%v", debug), func(b *testing.B) {
			b.ReportAllocs()
			var last mem.BufferSlice
			for b.Loop() {
				in := newWirePredict()
				if err := in.unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}); err != nil {
					b.Fatal(err)
				}
				out, err := g.predict(context.Background(), in)
				if err != nil {
					b.Fatal(err)
				}
				last.Free()
				if last, err = codec.Marshal(out); err != nil {
					b.Fatal(err)
				}
				in.release()
			}
			var resp seerv1.PredictResponse
			if err := proto.Unmarshal(last.Materialize(), &resp); err != nil {
				b.Fatal(err)
			}
			if r := resp.Results[0]; r.Degraded || len(r.Scores) != 200 {
				b.Fatalf("degraded %v, %d scores", r.Degraded, len(r.Scores))
			}
		})
	}
}

// BenchmarkGRPCFeatures is BenchmarkFeatures over gRPC, without the
// transport: reading the GetFeatures request of a 1- and a 100-entity
// query, the request path against a real Redis, and marshalling the
// answer as the server's codec does.
func BenchmarkGRPCFeatures(b *testing.B) {
	g := grpcSeer{s: testServer(b)}
	codec := newWireCodec()
	for _, n := range []int{1, 100} {
		in := &seerv1.GetFeaturesRequest{Queries: []*seerv1.FeaturesQuery{{
			Features: []string{"store_avg_rating", "store_num_ratings", "store_delivery_minutes"},
		}}}
		for i := range n {
			in.Queries[0].Candidates = append(in.Queries[0].Candidates, &seerv1.Candidate{Entities: map[string]string{"store": strconv.Itoa(i * 37 % 200)}})
		}
		msg, err := proto.Marshal(in)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("entities=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var last mem.BufferSlice
			for b.Loop() {
				in := newWireFeatures()
				if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, in); err != nil {
					b.Fatal(err)
				}
				out, err := g.features(context.Background(), in)
				if err != nil {
					b.Fatal(err)
				}
				last.Free()
				if last, err = codec.Marshal(out); err != nil {
					b.Fatal(err)
				}
				in.release()
			}
			var resp seerv1.GetFeaturesResponse
			if err := proto.Unmarshal(last.Materialize(), &resp); err != nil {
				b.Fatal(err)
			}
			if r := resp.Results[0]; r.Degraded || len(r.Rows) != n || r.Rows[0].Cells["store_num_ratings"].GetSource() != "redis" {
				b.Fatalf("degraded %v, %d rows: %v", r.Degraded, len(r.Rows), r.Rows[0])
			}
		})
	}
}

// BenchmarkWireAnswer measures writing a 100-row GetFeatures answer of
// three float cells read from Redis, each with its stamp, as the wire
// bytes of seer.v1.GetFeaturesResponse.
func BenchmarkWireAnswer(b *testing.B) {
	rows := Rows{Inputs: []string{"store_avg_rating", "store_num_ratings", "store_delivery_minutes"}}
	for i := range 300 {
		rows.Cells = append(rows.Cells, features.Cell{Value: features.FloatValue(float64(i) / 7), Source: features.FromRedis, Updated: 1_765_000_000})
	}
	resp := &FeaturesResponse{Results: []FeaturesResult{{Rows: rows}}}
	b.ReportAllocs()
	for b.Loop() {
		featuresAnswer(resp).buf.Free()
	}
}
