//go:build !amd64 || purego

package onnx

const useKernel = false

func gemmBlock(k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	gemmBlockGo(k, a, lda, b, ldb, c, ldc)
}
