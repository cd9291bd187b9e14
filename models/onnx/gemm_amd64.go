//go:build !purego

package onnx

import "golang.org/x/sys/cpu"

// useKernel: the 4×16 blocks of sgemm go to an AVX2 and FMA kernel in
// assembly. A Go loop compiles to scalar float32 code (the compiler does
// not vectorise), which scores the 64-256-128-1 benchmark MLP several
// times slower than PyTorch; the kernel brings it within the speed goal
// (docs/performance.md). The purego build tag turns it off, and tests
// compare it with gemmBlockGo.
var useKernel = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// gemmBlock computes C[0:4, 0:16] += A[0:4, 0:k]·B[0:k, 0:16], k >= 1.
func gemmBlock(k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	// The kernel reads and writes exactly these elements.
	_ = a[3*lda+k-1]
	_ = b[(k-1)*ldb+15]
	_ = c[3*ldc+15]
	gemmBlockAVX2(k, &a[0], lda, &b[0], ldb, &c[0], ldc)
}

//go:noescape
func gemmBlockAVX2(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int)
