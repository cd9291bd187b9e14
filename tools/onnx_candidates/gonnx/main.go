// Command gonnx runs seer's ONNX oracles through
// github.com/advancedclimatesystems/gonnx:
//
//	cd tools/onnx_candidates/gonnx && go run . ../../../models/testdata/onnx
package main

import (
	"fmt"
	"log"
	"os"

	"github.com/advancedclimatesystems/gonnx"
	"gorgonia.org/tensor"

	"github.com/seer-ml/seer/tools/onnx_candidates/harness"
)

type runtime struct{ m *gonnx.Model }

func (r *runtime) Load(b []byte) (err error) {
	r.m, err = gonnx.NewModelFromBytes(b)
	return err
}

func (r *runtime) Run(in []harness.Input) ([]float32, error) {
	ts := gonnx.Tensors{}
	for _, x := range in {
		if x.Int64 != nil {
			ts[x.Name] = tensor.New(tensor.WithShape(x.Rows, x.Cols), tensor.WithBacking(x.Int64))
		} else {
			ts[x.Name] = tensor.New(tensor.WithShape(x.Rows, x.Cols), tensor.WithBacking(x.Float32))
		}
	}
	out, err := r.m.Run(ts)
	if err != nil {
		return nil, err
	}
	t := out[r.m.OutputNames()[0]]
	if t == nil {
		return nil, fmt.Errorf("no output %s", r.m.OutputNames()[0])
	}
	f, ok := t.Data().([]float32)
	if !ok {
		return nil, fmt.Errorf("output of type %T", t.Data())
	}
	return f, nil
}

func main() {
	fmt.Println("== github.com/advancedclimatesystems/gonnx v1.1.0")
	if err := harness.Run(os.Args[1], func() harness.Runtime { return &runtime{} }); err != nil {
		log.Fatal(err)
	}
}
