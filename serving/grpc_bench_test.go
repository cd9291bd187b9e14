package serving

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// BenchmarkGRPCPredict measures what the server does for a 200-candidate
// query over gRPC, without the transport: reading the request message,
// the request path against a real Redis, and marshalling the answer.
func BenchmarkGRPCPredict(b *testing.B) {
	g := grpcSeer{s: testServer(b)}
	for _, debug := range []bool{false, true} {
		msg, err := proto.Marshal(rankingProto(debug))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("candidates=200/debug=%v", debug), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				in := newWirePredict()
				if err := in.unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}); err != nil {
					b.Fatal(err)
				}
				out, err := g.predict(context.Background(), in)
				if err != nil {
					b.Fatal(err)
				}
				if out.Results[0].Degraded || len(out.Results[0].Scores) != 200 {
					b.Fatalf("degraded %v, %d scores", out.Results[0].Degraded, len(out.Results[0].Scores))
				}
				if _, err := proto.Marshal(out); err != nil {
					b.Fatal(err)
				}
				in.release()
			}
		})
	}
}
