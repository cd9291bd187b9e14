package loadgen

import "google.golang.org/protobuf/proto"

// RawCodec is a gRPC codec for clients (grpc.ForceCodec) that sends a
// message marshalled beforehand, a *[]byte, as it is, so that a load
// generator's own encoding does not weigh on its figures and a test can
// send bytes no client would make; other messages, and answers, are
// protobuf.
type RawCodec struct{}

func (RawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.(*[]byte); ok {
		return *b, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (RawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }

func (RawCodec) Name() string { return "proto" }
