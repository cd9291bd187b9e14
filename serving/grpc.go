package serving

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
)

// GRPC returns the gRPC transport on a new grpc.Server: seer.v1.Seer over
// Predict and Features, the standard health service (grpc.health.v1: ""
// and "seer.v1.Seer" follow readiness, and each model's name is a service
// that serves while the model has a default version) and server
// reflection. Messages over max_body_bytes are refused with
// RESOURCE_EXHAUSTED, and messages that do not parse, to any of the
// three, with INVALID_ARGUMENT saying why.
func (s *Server) GRPC(opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(int(min(s.cfg.Predict.MaxBodyBytes, math.MaxInt32))),
		grpc.ChainUnaryInterceptor(s.grpcCall),
		grpc.ForceServerCodecV2(newWireCodec()),
	}, opts...)
	gs := grpc.NewServer(opts...)
	gs.RegisterService(&seerService, grpcSeer{s: s})
	healthpb.RegisterHealthServer(parseChecked{gs}, grpcHealth{s: s})
	reflection.Register(parseChecked{gs})
	return gs
}

// parseChecked registers services whose requests that do not parse are
// answered INVALID_ARGUMENT saying why, as seer.v1.Seer's are (unary):
// grpc-go answers INTERNAL when its codec fails, as if the server were
// broken. Each handler receives its requests through a parsed, into which
// wireCodec reads the message and puts why it did not parse.
type parseChecked struct{ *grpc.Server }

func (r parseChecked) RegisterService(d *grpc.ServiceDesc, impl any) {
	c := *d
	c.Methods = slices.Clone(d.Methods)
	for i := range c.Methods {
		h := c.Methods[i].Handler
		c.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(m any) error { return recvParsed(dec, m) }, interceptor)
		}
	}
	c.Streams = slices.Clone(d.Streams)
	for i := range c.Streams {
		h := c.Streams[i].Handler
		c.Streams[i].Handler = func(srv any, stream grpc.ServerStream) error { return h(srv, parsedStream{stream}) }
	}
	r.Server.RegisterService(&c, impl)
}

// parsed is a request message m as wireCodec reads it: err is why it did
// not parse.
type parsed struct {
	m   any
	err error
}

// recvParsed receives a request into m with recv, through a parsed.
func recvParsed(recv func(any) error, m any) error {
	p := parsed{m: m}
	if err := recv(&p); err != nil {
		return err
	}
	if p.err != nil {
		return status.Error(codes.InvalidArgument, "the request message does not parse: "+p.err.Error())
	}
	return nil
}

// parsedStream is a stream of a service registered by parseChecked.
type parsedStream struct{ grpc.ServerStream }

func (s parsedStream) RecvMsg(m any) error { return recvParsed(s.ServerStream.RecvMsg, m) }

// grpcCode is the gRPC status code of each class of error.
var grpcCode = [...]codes.Code{
	classInternal:     codes.Internal,
	classInvalid:      codes.InvalidArgument,
	classNotFound:     codes.NotFound,
	classTooLarge:     codes.ResourceExhausted,
	classUnauthorized: codes.Unauthenticated,
	classForbidden:    codes.PermissionDenied,
	classTimeout:      codes.DeadlineExceeded,
	classCancelled:    codes.Canceled,
	classUnavailable:  codes.Unavailable,
}

// grpcCall gives each call of seer.v1.Seer its request id (metadata
// x-request-id, taken from the call or made, and sent back in the
// header), and records it in the per-model metrics and the access log.
func (s *Server) grpcCall(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, "/"+seerv1.Seer_ServiceDesc.ServiceName+"/") {
		return handler(ctx, req)
	}
	start := time.Now()
	var id string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-request-id"); len(v) > 0 {
			id, _ = requestIDFrom(v[0])
		}
	}
	if id == "" {
		id = s.ids.next()
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", id))
	c := &call{id: id}
	ctx = withCall(ctx, c)
	resp, err := handler(ctx, req)
	code := status.Code(err)
	class := "5xx"
	switch code {
	case codes.OK:
		class = "2xx"
	case codes.InvalidArgument, codes.NotFound, codes.ResourceExhausted, codes.Unauthenticated, codes.PermissionDenied, codes.Canceled:
		class = "4xx"
	}
	s.finish(ctx, c, "grpc", info.FullMethod, slog.String("code", code.String()), class, time.Since(start))
	return resp, err
}

// grpcError turns an error of the request path into a status with the
// message the JSON API gives; internal errors are logged here, once.
func (s *Server) grpcError(ctx context.Context, method string, err error) error {
	c := classify(err)
	if c == classUnavailable && errors.Is(err, ErrDegraded) {
		// Reported on the query's degraded line, rate-limited.
		if cl := callFrom(ctx); cl != nil {
			cl.failedDegraded = true
		}
	}
	if c == classInternal || c == classTimeout {
		s.log.ErrorContext(ctx, "request failed", "method", method, "code", grpcCode[c].String(), "err", err)
	}
	return status.Error(grpcCode[c], err.Error())
}

// grpcSeer serves seer.v1.Seer.
type grpcSeer struct {
	seerv1.UnimplementedSeerServer
	s *Server
}

// seerService is seer.v1.Seer with the handlers of grpcPredict, which
// reads its request with wirePredict rather than proto.Unmarshal, and
// grpcGetFeatures; both answer with a wireAnswer rather than a message
// for proto.Marshal.
var seerService = func() grpc.ServiceDesc {
	d := seerv1.Seer_ServiceDesc
	d.Methods = slices.Clone(d.Methods)
	for i := range d.Methods {
		switch d.Methods[i].MethodName {
		case "Predict":
			d.Methods[i].Handler = grpcPredict
		case "GetFeatures":
			d.Methods[i].Handler = grpcGetFeatures
		}
	}
	return d
}()

// grpcPredict is the handler of seer.v1.Seer.Predict: it reads the
// request into a pooled wirePredict (the server's codec, wireCodec, knows
// it) and releases it once the call is answered.
func grpcPredict(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := newWirePredict()
	defer in.release()
	return unary(srv, ctx, in, dec, interceptor, seerv1.Seer_Predict_FullMethodName, grpcSeer.predict)
}

// unary reads a call's request into in with dec and answers it with do
// through the interceptor. A message that does not parse is answered
// INVALID_ARGUMENT saying why, as a body that is not JSON is answered 400
// (grpc-go answers INTERNAL when its codec fails, so wireCodec keeps the
// error in the request instead), and goes through the interceptor too, so
// that it has a request id, is logged and counted.
func unary(srv any, ctx context.Context, in *wirePredict, dec func(any) error, interceptor grpc.UnaryServerInterceptor,
	method string, do func(grpcSeer, context.Context, *wirePredict) (*wireAnswer, error)) (any, error) {
	g := srv.(grpcSeer)
	in.lim = limits{queries: g.s.cfg.Predict.MaxQueries, candidates: g.s.cfg.Predict.MaxCandidates}
	if err := dec(in); err != nil {
		return nil, err
	}
	handler := func(ctx context.Context, req any) (any, error) { return do(g, ctx, req.(*wirePredict)) }
	if in.bad != nil {
		bad := status.Error(codes.InvalidArgument, "the request message does not parse: "+in.bad.Error())
		handler = func(context.Context, any) (any, error) { return nil, bad }
	}
	if interceptor == nil {
		return handler(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, handler)
}

func (g grpcSeer) predict(ctx context.Context, in *wirePredict) (*wireAnswer, error) {
	req, err := in.request()
	if err != nil {
		return nil, g.s.grpcError(ctx, "Predict", err)
	}
	resp, err := g.s.Predict(ctx, req)
	if err != nil {
		return nil, g.s.grpcError(ctx, "Predict", err)
	}
	return predictAnswer(resp), nil
}

// grpcGetFeatures is the handler of seer.v1.Seer.GetFeatures, as
// grpcPredict.
func grpcGetFeatures(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := newWireFeatures()
	defer in.release()
	return unary(srv, ctx, in, dec, interceptor, seerv1.Seer_GetFeatures_FullMethodName, grpcSeer.features)
}

func (g grpcSeer) features(ctx context.Context, in *wirePredict) (*wireAnswer, error) {
	req, err := in.featuresRequest()
	if err != nil {
		return nil, g.s.grpcError(ctx, "GetFeatures", err)
	}
	resp, err := g.s.Features(ctx, req)
	if err != nil {
		return nil, g.s.grpcError(ctx, "GetFeatures", err)
	}
	return featuresAnswer(resp), nil
}

// onDegradedFromProto converts on_degraded: the two enums have the same
// numbers. A number outside them is refused, naming the field (where).
func onDegradedFromProto(v seerv1.OnDegraded, where string) (OnDegraded, error) {
	if v < 0 || v > seerv1.OnDegraded(OnDegradedFail) {
		return 0, badRequest("%s: unknown value %d", where, v)
	}
	return OnDegraded(v), nil
}

// grpcHealth serves grpc.health.v1 from the server's state: the whole
// service ("" and "seer.v1.Seer") serves while the server is ready; a
// model's name serves while the registry resolves it.
type grpcHealth struct {
	healthpb.UnimplementedHealthServer
	s *Server
}

// healthPoll is how often Watch looks for a change.
const healthPoll = time.Second

// errUnknownService answers a health check of a name that is neither the
// service nor a model.
var errUnknownService = errors.New("unknown service")

func (h grpcHealth) status(ctx context.Context, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	ready := h.s.Ready(ctx).Ready
	switch service {
	case "", seerv1.Seer_ServiceDesc.ServiceName:
	default:
		if _, err := h.s.registry.Snapshot().Resolve(service); err != nil {
			return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, errUnknownService
		}
	}
	if !ready {
		return healthpb.HealthCheckResponse_NOT_SERVING, nil
	}
	return healthpb.HealthCheckResponse_SERVING, nil
}

func (h grpcHealth) Check(ctx context.Context, in *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, err := h.status(ctx, in.GetService())
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "%v %q", err, in.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

func (h grpcHealth) List(ctx context.Context, _ *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	names := []string{"", seerv1.Seer_ServiceDesc.ServiceName}
	for _, m := range h.s.registry.Snapshot().Models() {
		names = append(names, m.Name)
	}
	out := &healthpb.HealthListResponse{Statuses: make(map[string]*healthpb.HealthCheckResponse, len(names))}
	for _, n := range names {
		st, _ := h.status(ctx, n)
		out.Statuses[n] = &healthpb.HealthCheckResponse{Status: st}
	}
	return out, nil
}

// Watch sends the service's status at once and again on every change, as
// grpc.health.v1 asks: SERVICE_UNKNOWN for a name that is not served.
func (h grpcHealth) Watch(in *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx := stream.Context()
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for {
		st, _ := h.status(ctx, in.GetService())
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-h.s.streams:
			return status.Error(codes.Unavailable, "server shutting down")
		case <-tick.C:
		}
	}
}
