package onnx

// sgemm computes C += A·B for row-major float32 matrices: A is m×k with
// leading dimension lda, B is k×n (ldb), C is m×n (ldc). Blocks of 4 rows
// and 16 columns go to gemmBlock (an AVX2 and FMA kernel where the CPU has
// them); the edges are done here, a row at a time.
func sgemm(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m == 0 || n == 0 || k == 0 {
		return
	}
	_ = a[(m-1)*lda+k-1]
	_ = b[(k-1)*ldb+n-1]
	_ = c[(m-1)*ldc+n-1]
	n16 := 0
	if useKernel {
		n16 = n &^ 15
	}
	m4 := m &^ 3
	if n16 > 0 {
		for i := 0; i < m4; i += 4 {
			for j := 0; j < n16; j += 16 {
				gemmBlock(k, a[i*lda:], lda, b[j:], ldb, c[i*ldc+j:], ldc)
			}
		}
	}
	// What the blocks left: the columns past n16 of the first m4 rows,
	// and every column of the last rows.
	for i := range m {
		j0 := n16
		if i >= m4 {
			j0 = 0
		}
		if j0 == n {
			continue
		}
		gemmRow(k, a[i*lda:i*lda+k], b[j0:], ldb, c[i*ldc+j0:i*ldc+n])
	}
}

// gemmRow computes c += a·B for one row a of k values and the len(c)
// columns of B that start at b[0].
func gemmRow(k int, a, b []float32, ldb int, c []float32) {
	n := len(c)
	if n == 1 {
		s := c[0]
		for p, v := range a[:k] {
			s += v * b[p*ldb]
		}
		c[0] = s
		return
	}
	for p, v := range a[:k] {
		row := b[p*ldb : p*ldb+n]
		for j, w := range row {
			c[j] += v * w
		}
	}
}

// gemmBlockGo is the portable form of gemmBlock: C[0:4, 0:16] += A[0:4,
// 0:k]·B[0:k, 0:16].
func gemmBlockGo(k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	for r := range 4 {
		gemmRow(k, a[r*lda:r*lda+k], b, ldb, c[r*ldc:r*ldc+16])
	}
}
