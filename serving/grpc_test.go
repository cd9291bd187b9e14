package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
	"github.com/seer-ml/seer/internal/loadgen"
)

// grpcClient serves srv's gRPC transport on a free loopback port and
// returns a real client connection to it.
func grpcClient(t *testing.T, srv *Server) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := srv.GRPC()
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rankingProto is rankingBody as a gRPC request.
func rankingProto(debug bool) *seerv1.PredictRequest {
	q := &seerv1.Query{
		Id: "q", Model: "store_ranker", Context: map[string]string{"consumer": "1"},
		Features: map[string]*seerv1.Value{"hour_of_day": {Kind: &seerv1.Value_Int64Value{Int64Value: 19}}},
	}
	for i := range 200 {
		q.Candidates = append(q.Candidates, &seerv1.Candidate{
			Entities: map[string]string{"store": fmt.Sprint(i)},
			Features: map[string]*seerv1.Value{"distance_km": {Kind: &seerv1.Value_DoubleValue{DoubleValue: float64(i%50) / 5}}},
		})
	}
	return &seerv1.PredictRequest{Debug: debug, Queries: []*seerv1.Query{q}}
}

// TestGRPCPredict requires a real gRPC client to get the HTTP API's scores
// and debug cells for the same 200-candidate query.
func TestGRPCPredict(t *testing.T) {
	srv := testServer(t)
	client := seerv1.NewSeerClient(grpcClient(t, srv))
	want := httpAnswer(t, srv, "/v1/predict", rankingBody(true))["results"].([]any)[0].(map[string]any)
	resp, err := client.Predict(context.Background(), rankingProto(true))
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Results[0]
	if got.Id != "q" || got.Model != "store_ranker" || got.Version != want["version"] || got.Outputs != 1 || got.Degraded {
		t.Errorf("result %s %s@%s, %d outputs, degraded %v", got.Id, got.Model, got.Version, got.Outputs, got.Degraded)
	}
	wantScores := want["scores"].([]any)
	if len(got.Scores) != len(wantScores) {
		t.Fatalf("%d scores, want %d", len(got.Scores), len(wantScores))
	}
	for i, w := range wantScores {
		if got.Scores[i] != w.(float64) {
			t.Errorf("score %d: gRPC %v, HTTP %v", i, got.Scores[i], w)
		}
	}
	// Debug cells: the same values and sources; protojson writes the value
	// oneof as an object, so compare value by value.
	wantDebug := want["debug"].([]any)
	if len(got.Debug) != len(wantDebug) {
		t.Fatalf("%d debug rows, want %d", len(got.Debug), len(wantDebug))
	}
	for r, row := range wantDebug {
		for name, cell := range row.(map[string]any) {
			c := got.Debug[r].Cells[name]
			wc := cell.(map[string]any)
			if c.GetSource() != wc["source"] || !sameValue(c.GetValue(), wc["value"]) {
				t.Errorf("row %d %s: gRPC %v, HTTP %v", r, name, c, wc)
			}
		}
	}
}

// sameValue compares a gRPC value with the JSON API's.
func sameValue(v *seerv1.Value, j any) bool {
	switch k := v.GetKind().(type) {
	case nil:
		return j == nil
	case *seerv1.Value_DoubleValue:
		return j == k.DoubleValue
	case *seerv1.Value_Int64Value:
		return j == float64(k.Int64Value)
	case *seerv1.Value_BoolValue:
		return j == k.BoolValue
	case *seerv1.Value_StringValue:
		return j == k.StringValue
	}
	b, _ := protojson.Marshal(v)
	var got map[string]map[string]any
	_ = json.Unmarshal(b, &got)
	for _, inner := range got {
		return cmp.Equal(inner["values"], j)
	}
	return false
}

// TestGRPCFeatures requires GetFeatures to give /v1/features's values.
func TestGRPCFeatures(t *testing.T) {
	srv := testServer(t)
	client := seerv1.NewSeerClient(grpcClient(t, srv))
	body := `{"queries": [{"id": "f", "features": ["store_avg_rating", "consumer_avg_spend", "store_cuisine"], "context": {"consumer": 1},
	  "candidates": [{"entities": {"store": "3"}}, {"entities": {"store": "999"}}, {"entities": {"store": "4"}, "features": {"store_cuisine": "x"}}]}]}`
	want := httpAnswer(t, srv, "/v1/features", body)["results"].([]any)[0].(map[string]any)["rows"].([]any)
	resp, err := client.GetFeatures(context.Background(), &seerv1.GetFeaturesRequest{Queries: []*seerv1.FeaturesQuery{{
		Id: "f", Features: []string{"store_avg_rating", "consumer_avg_spend", "store_cuisine"}, Context: map[string]string{"consumer": "1"},
		Candidates: []*seerv1.Candidate{
			{Entities: map[string]string{"store": "3"}}, {Entities: map[string]string{"store": "999"}},
			{Entities: map[string]string{"store": "4"}, Features: map[string]*seerv1.Value{"store_cuisine": {Kind: &seerv1.Value_StringValue{StringValue: "x"}}}},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Results[0]
	if got.Id != "f" || len(got.Rows) != len(want) {
		t.Fatalf("id %q, %d rows, want %d", got.Id, len(got.Rows), len(want))
	}
	for r, row := range want {
		for name, cell := range row.(map[string]any) {
			c := got.Rows[r].Cells[name]
			wc := cell.(map[string]any)
			if c.GetSource() != wc["source"] || !sameValue(c.GetValue(), wc["value"]) {
				t.Errorf("row %d %s: gRPC %v, HTTP %v", r, name, c, wc)
			}
		}
	}
}

// TestGRPCErrors checks the status codes and that the messages are the
// JSON API's for the same mistakes.
func TestGRPCErrors(t *testing.T) {
	srv := testServer(t)
	client := seerv1.NewSeerClient(grpcClient(t, srv))
	value := func(v *seerv1.Value) map[string]*seerv1.Value { return map[string]*seerv1.Value{"distance_km": v} }
	tests := []struct {
		name string
		req  *seerv1.PredictRequest
		body string // the same request in JSON
		code codes.Code
		http int
	}{
		{"no queries", &seerv1.PredictRequest{}, `{"queries": []}`, codes.InvalidArgument, 400},
		{"no model", &seerv1.PredictRequest{Queries: []*seerv1.Query{{Id: "x"}}}, `{"queries": [{"id": "x"}]}`, codes.InvalidArgument, 400},
		{"unknown model", &seerv1.PredictRequest{Queries: []*seerv1.Query{{Model: "nope"}}}, `{"queries": [{"model": "nope"}]}`, codes.NotFound, 404},
		{"unknown version", &seerv1.PredictRequest{Queries: []*seerv1.Query{{Model: "store_ranker@9"}}}, `{"queries": [{"model": "store_ranker@9"}]}`, codes.NotFound, 404},
		{"unknown entity", &seerv1.PredictRequest{Queries: []*seerv1.Query{{Model: "store_ranker", Context: map[string]string{"shop": "1"}}}},
			`{"queries": [{"model": "store_ranker", "context": {"shop": "1"}}]}`, codes.InvalidArgument, 400},
		{"wrong type", &seerv1.PredictRequest{Queries: []*seerv1.Query{{Model: "store_ranker", Candidates: []*seerv1.Candidate{
			{Features: value(&seerv1.Value{Kind: &seerv1.Value_StringValue{StringValue: "far"}})}}}}},
			`{"queries": [{"model": "store_ranker", "candidates": [{"features": {"distance_km": "far"}}]}]}`, codes.InvalidArgument, 400},
		{"too many candidates", &seerv1.PredictRequest{Queries: []*seerv1.Query{{Model: "store_ranker", Candidates: make([]*seerv1.Candidate, 1001)}}},
			`{"queries": [{"model": "store_ranker", "candidates": [` + strings.Repeat(`{},`, 1000) + `{}]}]}`, codes.InvalidArgument, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.Predict(context.Background(), tt.req)
			st := status.Convert(err)
			var want struct{ Error string }
			code := httpError(t, srv, "/v1/predict", tt.body, &want)
			if st.Code() != tt.code || st.Message() != want.Error {
				t.Errorf("got %v %q; want %v and HTTP's %d %q", st.Code(), st.Message(), tt.code, code, want.Error)
			}
			if code != tt.http {
				t.Errorf("HTTP %d, want %d", code, tt.http)
			}
		})
	}
	// Entity ids follow features.CheckID here too.
	for id, want := range map[string]string{
		"1:2":                     `queries[0].context.store: bad entity id: ':' at byte 1`,
		strings.Repeat("7", 1025): "queries[0].context.store: bad entity id: 1025 bytes is over the limit of 1024",
		"{7}":                     "queries[0].context.store: bad entity id: '{' at byte 0",
	} {
		req := &seerv1.PredictRequest{Queries: []*seerv1.Query{{Model: "store_ranker", Context: map[string]string{"store": id}}}}
		_, err := client.Predict(context.Background(), req)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), want) {
			t.Errorf("id %.20q: got %v %q, want InvalidArgument %q", id, st.Code(), st.Message(), want)
		}
	}
	// A message over max_body_bytes.
	big := &seerv1.PredictRequest{Queries: []*seerv1.Query{{Model: "store_ranker", Id: strings.Repeat("x", 5<<20)}}}
	if _, err := client.Predict(context.Background(), big); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 5 MB message: %v", err)
	}
	// An on_degraded out of the enum's range (TestOnDegradedFail has FAIL).
	odd := rankingProto(false)
	odd.OnDegraded = 7
	if _, err := client.Predict(context.Background(), odd); status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "on_degraded: unknown value 7" {
		t.Errorf("on_degraded 7: %v", err)
	}
	_, err := client.GetFeatures(context.Background(), &seerv1.GetFeaturesRequest{Queries: []*seerv1.FeaturesQuery{{Features: []string{"nope"}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "queries[0].features") {
		t.Errorf("unknown feature: %v", err)
	}
}

// TestGRPCMalformed sends messages that do not parse: each call is
// refused with INVALID_ARGUMENT, saying why, as a body that is not JSON
// is refused with 400; and the server reads good messages after them.
func TestGRPCMalformed(t *testing.T) {
	srv := testServer(t)
	conn := grpcClient(t, srv)
	for _, method := range []string{seerv1.Seer_Predict_FullMethodName, seerv1.Seer_GetFeatures_FullMethodName} {
		for name, msg := range map[string][]byte{
			"cut short":    {0x0a, 0x05, 0x0a},
			"bad tag":      {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
			"invalid utf8": {0x0a, 0x03, 0x0a, 0x01, 0xc3},
		} {
			err := conn.Invoke(context.Background(), method, &msg, new(seerv1.PredictResponse), grpc.ForceCodec(loadgen.RawCodec{}))
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "proto:") {
				t.Errorf("%s, %s: %v; want InvalidArgument saying why", method, name, err)
			}
		}
	}
	client := seerv1.NewSeerClient(conn)
	if _, err := client.Predict(context.Background(), rankingProto(false)); err != nil {
		t.Fatalf("a good message after them: %v", err)
	}
}

// TestGRPCMalformedHealthAndReflection sends messages that do not parse to
// the health and reflection services, unary and streaming: each is
// refused with INVALID_ARGUMENT saying why, not grpc-go's INTERNAL, and
// good calls are answered after them.
func TestGRPCMalformedHealthAndReflection(t *testing.T) {
	srv := testServer(t)
	conn := grpcClient(t, srv)
	bad := map[string][]byte{
		"cut short":    {0x0a, 0x05, 0x41},
		"bad tag":      {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"invalid utf8": {0x0a, 0x01, 0xc3},
	}
	refused := func(what string, err error) {
		t.Helper()
		st := status.Convert(err)
		if why, ok := strings.CutPrefix(st.Message(), "the request message does not parse: "); st.Code() != codes.InvalidArgument || !ok || why == "" {
			t.Errorf("%s: %v; want InvalidArgument saying why", what, err)
		}
	}
	for name, msg := range bad {
		for _, method := range []string{healthpb.Health_Check_FullMethodName, healthpb.Health_List_FullMethodName} {
			if method == healthpb.Health_List_FullMethodName && name == "invalid utf8" {
				continue // HealthListRequest has no field 1: an unknown field, kept
			}
			err := conn.Invoke(context.Background(), method, &msg, new(healthpb.HealthCheckResponse), grpc.ForceCodec(loadgen.RawCodec{}))
			refused(method+", "+name, err)
		}
		// HealthCheckRequest's and ServerReflectionRequest's field 1 are
		// strings.
		for _, method := range []string{healthpb.Health_Watch_FullMethodName, reflectionpb.ServerReflection_ServerReflectionInfo_FullMethodName,
			"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodec(loadgen.RawCodec{}))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.SendMsg(&msg); err != nil {
				t.Fatal(err)
			}
			_ = stream.CloseSend()
			var reply []byte
			refused(method+", "+name, stream.RecvMsg(&reply))
			cancel()
		}
	}
	health := healthpb.NewHealthClient(conn)
	if resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("a good health check after them: %v %v", resp, err)
	}
	watch, err := health.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "store_ranker"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("a good watch after them: %v %v", resp, err)
	}
	if names := listServices(t, conn); !slices.Contains(names, "seer.v1.Seer") {
		t.Errorf("reflection after them lists %v", names)
	}
}

// httpError posts body to the HTTP handler and decodes the error body.
func httpError(t *testing.T, srv *Server, path, body string, out any) int {
	t.Helper()
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, httptest.NewRequest("POST", path, strings.NewReader(body)))
	if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
		t.Fatalf("%s: %v", w.Body, err)
	}
	return w.Code
}

// TestGRPCHealthAndReflection checks grpc.health.v1, per model too, and
// that reflection lists the services.
func TestGRPCHealthAndReflection(t *testing.T) {
	srv := testServer(t)
	conn := grpcClient(t, srv)
	health := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", "seer.v1.Seer", "store_ranker"} {
		resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v %v", svc, resp, err)
		}
	}
	if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown model: %v", err)
	}
	list, err := health.List(context.Background(), &healthpb.HealthListRequest{})
	if err != nil || len(list.Statuses) != 3 || list.Statuses["store_ranker"].GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("list: %v %v", list, err)
	}
	watch, err := health.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Errorf("watch of an unknown model: %v %v", resp, err)
	}

	names := listServices(t, conn)
	for _, want := range []string{"seer.v1.Seer", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, not %s", names, want)
		}
	}
}

// listServices asks server reflection for the services' names.
func listServices(t *testing.T, conn *grpc.ClientConn) []string {
	t.Helper()
	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := refl.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names
}
