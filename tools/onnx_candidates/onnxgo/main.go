// Command onnxgo runs seer's ONNX oracles through github.com/owulveryck/onnx-go
// with its gorgonia backend:
//
//	cd tools/onnx_candidates/onnxgo && go run . ../../../models/testdata/onnx
package main

import (
	"fmt"
	"log"
	"os"

	onnx "github.com/owulveryck/onnx-go"
	"github.com/owulveryck/onnx-go/backend/x/gorgonnx"
	"gorgonia.org/tensor"

	"github.com/seer-ml/seer/tools/onnx_candidates/harness"
)

type runtime struct {
	g *gorgonnx.Graph
	m *onnx.Model
}

func (r *runtime) Load(b []byte) error {
	r.g = gorgonnx.NewGraph()
	r.m = onnx.NewModel(r.g)
	return r.m.UnmarshalBinary(b)
}

func (r *runtime) Run(in []harness.Input) ([]float32, error) {
	for i, x := range in {
		var t tensor.Tensor
		if x.Int64 != nil {
			t = tensor.New(tensor.WithShape(x.Rows, x.Cols), tensor.WithBacking(x.Int64))
		} else {
			t = tensor.New(tensor.WithShape(x.Rows, x.Cols), tensor.WithBacking(x.Float32))
		}
		if err := r.m.SetInput(i, t); err != nil {
			return nil, err
		}
	}
	if err := r.g.Run(); err != nil {
		return nil, err
	}
	out, err := r.m.GetOutputTensors()
	if err != nil {
		return nil, err
	}
	f, ok := out[0].Data().([]float32)
	if !ok {
		return nil, fmt.Errorf("output of type %T", out[0].Data())
	}
	return f, nil
}

func main() {
	fmt.Println("== github.com/owulveryck/onnx-go v0.5.0, gorgonnx backend")
	if err := harness.Run(os.Args[1], func() harness.Runtime { return &runtime{} }); err != nil {
		log.Fatal(err)
	}
}
