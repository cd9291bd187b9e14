module github.com/seer-ml/seer/tools/onnx_candidates/harness

go 1.26.0
